import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { ChatReader, ServableModels } from "../../domain/admission.js";
import { readChat, type ChatFacts, type RequestBody } from "../../domain/chat-request.js";
import { deny, type Deny } from "../../domain/verdict.js";
import { workerFromModule } from "../worker-from-module.js";

/** One body for a worker to read. */
export interface ReadJob {
  id: number;
  body: RequestBody;
  servable: string[];
}

/** A worker's answer to one job. */
export interface ReadResult {
  id: number;
  read: ChatFacts | Deny;
}

/** How the pool reads: which bodies go to workers, how many workers, how many bodies may wait for one. */
export interface ChatReaderPoolOptions {
  /** Bodies of at least this many bytes are read on a worker thread; smaller ones in line (cheaper than a hop). */
  minBytes?: number;
  /** Worker threads; default one per core beyond the event loop's, at least one and at most two. */
  workers?: number;
  /** Bodies that may wait for a worker; past it a body is refused 429 (reading it in line would stall every Check). */
  maxQueue?: number;
  /** Large bodies one account may have waiting or being read; past it its next one is refused 429. */
  maxPerAccount?: number;
  /** A body that waited this long for a worker is not read (Envoy's ext_authz timeout has passed) and is refused. */
  maxWaitMs?: number;
  /** Nice value of the workers (Linux: per thread), so reading large bodies yields the CPU to small Checks. */
  nice?: number;
  /** Heap each worker may use; a body that needs more kills its worker and is read again. */
  maxHeapMb?: number;
  /** After workers died MAX_DEATHS_IN_A_ROW times in a row, how long the pool reads in line before it tries one again (doubling). */
  retryBackoffMs?: number;
  /** A worker died (the body it was reading is read again); must not throw. */
  onFault?(error: unknown): void;
}

/** A ChatReader that reads large bodies on worker threads; `close` stops them. */
export interface ChatReaderPool extends ChatReader {
  close(): Promise<void>;
}

/** A job waiting for, or being read by, a worker. */
interface Pending {
  id: number;
  /** The body as admission holds it: each attempt sends the worker a copy of its own. */
  body: RequestBody;
  servable: string[];
  attempts: number;
  /** When it was queued (ms, monotonic). */
  queuedAt: number;
  done(read: ChatFacts | Deny): void;
}

interface Slot {
  worker: Worker;
  pending: Pending | undefined;
  /**
   * Memory this worker reads its bodies from, shared with it and reused job after job: the event loop copies a body
   * into pages already mapped, where a fresh copy per body cost it a new 1 MiB allocation and its page faults (as much
   * main-thread CPU as receiving the body). Only this slot's job uses it, until the worker has answered.
   */
  shared: SharedArrayBuffer;
}

const DEFAULT_MIN_BYTES = 64 * 1024;
/** Bytes of a slot's shared memory: the data plane's 1 MiB body limit and some; a larger body gets a copy of its own. */
const SHARED_BYTES = 1_100_000;
const DEFAULT_MAX_QUEUE = 1024;
const DEFAULT_MAX_PER_ACCOUNT = 4;
/** envoy.yaml's ext_authz timeout. */
const DEFAULT_MAX_WAIT_MS = 1000;
const DEFAULT_NICE = 10;
const DEFAULT_MAX_HEAP_MB = 256;
/**
 * Workers that died in a row, none having answered, after which the pool reads in line for a backoff (doubling from
 * retryBackoffMs up to MAX_BACKOFF_MS) and then tries a worker again; a minute without a death forgets the deaths.
 */
const MAX_DEATHS_IN_A_ROW = 5;
const DEFAULT_RETRY_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 60_000;
const QUIET_MS = 60_000;
/** A body whose reading killed this many workers is read on the event loop: slow, but answered. */
const MAX_ATTEMPTS = 2;

/**
 * Reads chat bodies for admission, the large ones on a small pool of worker threads: parsing and estimating a body
 * near the data plane's 1 MiB limit costs milliseconds, and on the event loop every other tenant's Check would wait
 * for it. A worker starts with the first Check; the others start as large bodies need them; a worker that dies is
 * replaced, and workers keep the process alive only while reading.
 */
export function createChatReaderPool(options: ChatReaderPoolOptions = {}): ChatReaderPool {
  const minBytes = options.minBytes ?? DEFAULT_MIN_BYTES;
  const size = Math.max(1, options.workers ?? Math.min(2, availableParallelism() - 1));
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const nice = options.nice ?? DEFAULT_NICE;
  const maxHeapMb = options.maxHeapMb ?? DEFAULT_MAX_HEAP_MB;
  const maxPerAccount = options.maxPerAccount ?? DEFAULT_MAX_PER_ACCOUNT;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  /** Large bodies per account waiting or being read. */
  const inFlight = new Map<string, number>();
  const firstBackoffMs = options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  let deathsInARow = 0;
  let lastDeathAt = Number.NEGATIVE_INFINITY;
  let retryAt = 0;
  let backoffMs = firstBackoffMs;
  /** Whether workers keep dying, so bodies are read in line for now; lets one attempt through per backoff. */
  const failing = (): boolean => {
    if (deathsInARow < MAX_DEATHS_IN_A_ROW) return false;
    const now = performance.now();
    if (now - lastDeathAt >= QUIET_MS) {
      deathsInARow = 0;
      backoffMs = firstBackoffMs;
      return false;
    }
    if (now < retryAt) return true;
    retryAt = now + backoffMs;
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    return false;
  };
  let warmed = false;
  const slots: Slot[] = [];
  const queue: Pending[] = [];
  let nextId = 0;
  let closed = false;

  const start = (): Slot => {
    const worker = spawnWorker(nice, maxHeapMb);
    const slot: Slot = { worker, pending: undefined, shared: new SharedArrayBuffer(SHARED_BYTES) };
    worker.unref();
    worker.on("message", (result: ReadResult) => {
      const pending = slot.pending;
      if (!pending || pending.id !== result.id) return;
      slot.pending = undefined;
      deathsInARow = 0;
      backoffMs = firstBackoffMs;
      worker.unref();
      pending.done(result.read);
      pump();
    });
    const died = (error: unknown) => {
      const index = slots.indexOf(slot);
      if (index === -1) return;
      slots.splice(index, 1);
      const pending = slot.pending;
      slot.pending = undefined;
      if (!closed) {
        deathsInARow++;
        lastDeathAt = performance.now();
        // The threshold reached: read in line for a first backoff before trying a worker again.
        if (deathsInARow === MAX_DEATHS_IN_A_ROW) retryAt = lastDeathAt + backoffMs;
        options.onFault?.(error);
      }
      if (pending) retry(pending);
      pump();
    };
    worker.on("error", died);
    worker.on("exit", (code) => died(new Error(`chat reader worker exited with code ${code}`)));
    slots.push(slot);
    return slot;
  };

  const retry = (pending: Pending) => {
    pending.attempts++;
    if (closed || pending.attempts >= MAX_ATTEMPTS)
      pending.done(readChat(pending.body, (m) => pending.servable.includes(m)));
    else queue.unshift(pending);
  };

  const pump = () => {
    while (!closed && queue.length > 0) {
      const slot = slots.find((s) => s.pending === undefined) ?? (slots.length < size ? start() : undefined);
      if (!slot) return;
      const pending = queue.shift()!;
      if (performance.now() - pending.queuedAt > maxWaitMs) {
        pending.done(busy());
        continue;
      }
      slot.pending = pending;
      slot.worker.ref();
      // The bytes are copied once: into the slot's shared memory, or into a buffer of their own whose ownership moves
      // to the worker (no second copy).
      const body = forWorker(pending.body, slot.shared);
      const job: ReadJob = { id: pending.id, body, servable: pending.servable };
      const own = "bytes" in body && !(body.bytes.buffer instanceof SharedArrayBuffer);
      slot.worker.postMessage(job, own ? [body.bytes.buffer as ArrayBuffer] : []);
    }
  };

  return {
    read(body: RequestBody, servable: ServableModels, accountId: string) {
      // A worker takes a few hundred milliseconds to load the tokenizer: the first Check of any size starts one, so
      // the first large body rarely waits for it (and a process that serves no Check starts none).
      if (!warmed && !closed) {
        warmed = true;
        if (slots.length === 0) start();
      }
      const inLine = closed || bodySize(body) < minBytes || failing();
      if (inLine) return readChat(body, servable.has);
      // Fair shares: one account's flood of large bodies neither holds every worker nor queues the others behind it.
      const held = inFlight.get(accountId) ?? 0;
      if (held >= maxPerAccount) return tooMany();
      if (queue.length >= maxQueue) return busy();
      inFlight.set(accountId, held + 1);
      return new Promise<ChatFacts | Deny>((answer) => {
        const done = (read: ChatFacts | Deny) => {
          const left = (inFlight.get(accountId) ?? 1) - 1;
          if (left > 0) inFlight.set(accountId, left);
          else inFlight.delete(accountId);
          answer(read);
        };
        queue.push({ id: nextId++, body, servable: servable.ids(), attempts: 0, queuedAt: performance.now(), done });
        pump();
      });
    },
    async close() {
      closed = true;
      for (const pending of queue.splice(0)) retry(pending);
      await Promise.all(
        slots.splice(0).map(async (slot) => {
          if (slot.pending) retry(slot.pending);
          await slot.worker.terminate();
        }),
      );
    },
  };
}

/** The account's fair share of the readers is taken. */
function tooMany(): Deny {
  return deny("rate_limit_exceeded", "Too many large requests in flight for this account; retry shortly.", {
    retryAfterSeconds: 1,
  });
}

/** Every account's share is queued, or the body waited past the data plane's timeout. */
function busy(): Deny {
  return deny("rate_limit_exceeded", "The gateway is busy reading large requests; retry shortly.", {
    retryAfterSeconds: 1,
  });
}

/** The body as a worker gets it: its bytes copied into `shared` when they fit, else into a buffer of their own. */
function forWorker(body: RequestBody, shared: SharedArrayBuffer): RequestBody {
  if (body.kind !== "bytes" && body.kind !== "utf8") return body;
  if (body.bytes.length > shared.byteLength) return { kind: body.kind, bytes: new Uint8Array(body.bytes) };
  const bytes = new Uint8Array(shared, 0, body.bytes.length);
  bytes.set(body.bytes);
  return { kind: body.kind, bytes };
}

function bodySize(body: RequestBody): number {
  if (body.kind === "bytes" || body.kind === "utf8") return body.bytes.length;
  // A string's UTF-16 length is a lower bound of its UTF-8 bytes: enough to tell large from small.
  return body.kind === "text" ? body.text.length : 0;
}

// Built, the worker is the .js beside this file; run from source (vitest, tsx), the .ts.
const WORKER_FILE = new URL(`./chat-reader-worker.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`, import.meta.url);

function spawnWorker(nice: number, maxHeapMb: number): Worker {
  return workerFromModule(WORKER_FILE, {
    workerData: { nice },
    execArgv: [],
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
  });
}
