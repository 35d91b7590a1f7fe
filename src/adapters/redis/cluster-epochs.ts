import { randomUUID } from "node:crypto";
import type { RedisConnection } from "./client.js";

// Redis Cluster and the data-loss fence (see credit-gate.ts): a script may only touch keys of one slot, so the
// dataset epoch, fence and server keys cannot live in one place (`{credit}`) as they do on one primary. Each slot
// has its own copy, under a hash tag chosen to land in that slot (`<prefix>{<tag>}:epoch|fence|server`), so every
// script that needs them touches one slot with the account's keys. A slot's copy lives and dies with the slot's
// data: a master that comes back empty has lost exactly its slots' epochs (and reservations), and only the accounts
// in those slots are fenced. SQL remembers one marker per prefix ("this dataset existed"): with it, a slot without
// an epoch is a slot that lost its data. Every slot gets an epoch before the marker is first written, so a slot
// nobody used yet is never mistaken for a lost one.
//
// A cluster client holds one connection per node and follows redirects, so "verified on this connection" (what one
// primary relies on) cannot say which server a script will run on. Instead every credit script run in a cluster
// checks the server itself (credit_guard in credit-gate.ts): the slot's epoch is the one the process verified, and
// the server it runs on (run_id and replication id) is the one the slot was last verified on. Otherwise it writes
// nothing and answers -2, and the process verifies that slot again (which fences it after a failover unless
// redis.durable) before it decides anything there.

/**
 * Lua for every credit script that may run in a cluster. The caller appends the slot's epoch and server keys as the
 * last two KEYS (only in a cluster); then the slot must carry the epoch the process verified, and the server running
 * the script (run_id and replication id: new on every restart and promotion, read as the attach script reads them)
 * must be the one the slot was last verified on. `credit_guard(epoch)` false: the script writes nothing and answers
 * -2. Reading INFO costs each run Redis CPU (see the README's Redis Cluster section); one primary does not pay it (its
 * connection is verified once after each connect instead).
 */
export const CLUSTER_GUARD_LUA = `
local function credit_guard(epoch)
  local n = #KEYS
  if n < 2 or string.sub(KEYS[n], -7) ~= ':server' then return true end
  if redis.call('GET', KEYS[n - 1]) ~= epoch then return false end
  -- The attach script's identity string, read section by section (a third cheaper than matching their concatenation).
  local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
  return redis.call('GET', KEYS[n]) == run_id .. ':' .. replid
end
`;

/** Slots in a Redis Cluster. */
export const CLUSTER_SLOTS = 16384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** CRC16/XMODEM over the key's UTF-8 bytes: what Redis Cluster hashes. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

/** The Redis Cluster slot of a key (its `{hash tag}` when it has a non-empty one, as Redis decides). */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % CLUSTER_SLOTS;
  }
  return crc16(bytes) % CLUSTER_SLOTS;
}

let tags: string[] | undefined;

/** A short hash tag that lands in `slot`: the first of `e0`, `e1`, … that does, so every process picks the same. */
export function slotTag(slot: number): string {
  if (!tags) {
    const found: string[] = new Array(CLUSTER_SLOTS);
    let missing = CLUSTER_SLOTS;
    for (let i = 0; missing > 0; i++) {
      const tag = `e${i}`;
      const s = crc16(Buffer.from(tag, "latin1")) % CLUSTER_SLOTS;
      if (found[s] === undefined) {
        found[s] = tag;
        missing--;
      }
    }
    tags = found;
  }
  return tags[slot]!;
}

/** The epoch, fence and server keys of one slot. */
export type EpochKeys = [epoch: string, fence: string, server: string];

/** Runs the attach script (credit-gate.ts) on the slot of `keys`: {epoch, 0 | 1 emptied | 2 another server}. */
export type RunAttach = (keys: EpochKeys, known: string, candidate: string, now: number) => Promise<[string, number]>;

/** What verifying a cluster's slots needs. */
export interface SlotVerificationOptions {
  redis: RedisConnection;
  /** The credit gate's key prefix (`tollgate:`). */
  prefix: string;
  runAttach: RunAttach;
  ttlMs: number;
  clock: () => number;
  /** SQL's memory that the dataset existed; absent in a one-shot gate (CLI), which then never vouches for a slot. */
  epochs?: { read(): Promise<string | null>; write(epoch: string): Promise<void> };
  onDataLoss?(info: { fencedUntil: number; cause: "emptied" | "server_changed" }): void;
  onVerifyError?(error: unknown): void;
}

/** Slots attached at once while a first start gives every slot its epoch. */
const INIT_BATCH = 512;

/**
 * Per-slot verification of a Redis Cluster dataset. `epoch(slot)` is what the process verified for a slot (scripts
 * pass it, and credit_guard compares it and the server); `attach(slot)` (re)verifies one slot, fencing it when its
 * data was lost or its server changed.
 */
export function createSlotVerification(options: SlotVerificationOptions) {
  const verified = new Map<number, string>();
  const attaching = new Map<number, Promise<void>>();
  let known: Promise<string> | undefined;
  let initialized = false;

  function keysOf(slot: number): EpochKeys {
    const base = `${options.prefix}{${slotTag(slot)}}:`;
    return [`${base}epoch`, `${base}fence`, `${base}server`];
  }

  async function attachOnce(slot: number, before: string, now: number): Promise<void> {
    const [epoch, lost] = await options.runAttach(keysOf(slot), before, randomUUID(), now);
    verified.set(slot, epoch);
    if (Number(lost) > 0)
      options.onDataLoss?.({
        fencedUntil: now + options.ttlMs,
        cause: Number(lost) === 1 ? "emptied" : "server_changed",
      });
  }

  /** SQL's marker ('' before any). The first process gives every slot an epoch before the marker is written. */
  function knownMarker(): Promise<string> {
    known ??= (async () => {
      const remembered = (await options.epochs?.read()) ?? null;
      if (remembered || !options.epochs) return remembered ?? "";
      const now = options.clock();
      for (let from = 0; from < CLUSTER_SLOTS; from += INIT_BATCH) {
        const batch: Array<Promise<void>> = [];
        for (let slot = from; slot < Math.min(from + INIT_BATCH, CLUSTER_SLOTS); slot++)
          batch.push(attachOnce(slot, "", now));
        await Promise.all(batch);
      }
      const marker = randomUUID();
      await options.epochs.write(marker);
      return marker;
    })().then(
      (marker) => {
        initialized = true;
        return marker;
      },
      (error: unknown) => {
        known = undefined;
        throw error;
      },
    );
    return known;
  }

  function attach(slot: number, now: number): Promise<void> {
    let running = attaching.get(slot);
    if (!running) {
      running = (async () => attachOnce(slot, await knownMarker(), now))().finally(() => attaching.delete(slot));
      attaching.set(slot, running);
    }
    return running;
  }

  // Processes that remember the marker in SQL (authz, meter) read it (and on a first start, give every slot its
  // epoch) as soon as the cluster is ready; failures are retried by the next admission.
  const onReady = () => {
    if (options.epochs) knownMarker().catch((error: unknown) => options.onVerifyError?.(error));
  };
  options.redis.on("ready", onReady);
  if (options.redis.status === "ready") onReady();

  return {
    keysOf,
    attach,
    /** The epoch verified for `slot`, or undefined (then attach first). */
    epoch: (slot: number): string | undefined => verified.get(slot),
    /** Whether the process has read (or written) SQL's marker with the cluster connected: readiness. */
    isVerified: () => initialized && options.redis.status === "ready",
    async whenVerified(timeoutMs: number): Promise<boolean> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const done = knownMarker().then(
        () => true,
        () => false,
      );
      try {
        return await Promise.race([done, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    close() {
      options.redis.off("ready", onReady);
    },
  };
}
