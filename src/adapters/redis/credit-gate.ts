import { randomUUID } from "node:crypto";
import type { CreditReserveOutcome } from "../../domain/admission.js";
import type { BudgetHold, SpendTotal } from "../../domain/budgets.js";
import { clampBalance, type CreditReservations } from "../../domain/credits.js";
import type { BalanceChange, BalanceSource, ExpiredReservation } from "../../domain/metering.js";
import { MAX_BALANCE_NANOS, nanos } from "../../domain/money.js";
import { commandTimeoutOf, isCluster, queuesWhileDisconnected, type RedisConnection } from "./client.js";
import { CLUSTER_GUARD_LUA, createSlotVerification, keySlot } from "./cluster-epochs.js";

// Consistency with SQL (the ledger is the truth; Redis is a versioned cache plus the open reservations):
// - `{acct}:bal` holds (balance, version) copied from a committed SQL balances row. It is only ever replaced by a
//   strictly newer version (load script, commit script), so it is always some committed SQL state, never a sum
//   of deltas that a crash or a replay could apply twice or miss.
// - `{acct}:held` is the sum of open reservations in `{acct}:resv`; reserve adds, the commit script removes a
//   decision's reservation exactly once (HDEL decides), so held never double-counts.
// - The meter updates Redis after its SQL commit. In between, Redis still shows the previous balance and still
//   holds the reservation, which is at least the settled cost: available = balance − held is understated, never
//   overstated. A crash in between leaves the reservation to the expiry sweep, whose commit finds the decision
//   already billed, releases it and copies the account's current SQL balance.
// - `{acct}:bal` expires (balance_ttl) so changes nobody pushed (another tool's top-up) are re-read from SQL.
// - Lua numbers are doubles, exact for integers up to 2^53. Balances are clamped to ±MAX_BALANCE_NANOS (under 2^53)
//   before they reach Redis (a larger legacy balance still refuses nothing a smaller one would allow: it only ever
//   refuses more), held ≤ balance ≤ MAX_BALANCE_NANOS by construction, and amounts travel as decimal strings
//   (HSET/INCRBY store them as written), so every figure a decision compares or returns is exact.
// - Data loss (issue 11, item 6): a Redis that restarted empty, or a replica promoted without the dataset, has lost
//   the open reservations while their requests are still in flight. Every dataset carries an epoch
//   (`{credit}:epoch`); the load script refuses to load a balance into a dataset whose epoch is not the one this
//   process (and SQL) knows, and the process then recovers: it writes a new epoch and a fence
//   (`{credit}:fence` = now + reservation TTL) that every balance loaded afterwards carries. While fenced an account
//   is refused (503 unavailable) except for retries of held decisions: every reservation the loss erased has expired
//   by then, and its request, if it ran, has been billed by the meter or is billed by reconcile.
// - Stale data: a Redis that comes back with OLDER data (an RDB snapshot, an AOF that lost its last second, a
//   replica promoted after missing writes) still has its epoch but not the reservations taken since. The dataset
//   remembers the server it was last verified on (`{credit}:server` = run_id and replication id, both new on every
//   restart and promotion). After every (re)connect, before the connection decides any Check, the attach script
//   compares them: another server means the dataset may be older than the reservations in flight, so (unless the
//   operator asserts redis.durable: every write fsynced and replicated synchronously) it gets a new epoch and the
//   fence. Each balance carries the epoch it was loaded under and every admission script passes the epoch its
//   connection was verified under, so a balance from before a new epoch is reloaded (and takes the fence) and a
//   connection that was not verified since it last (re)connected decides nothing (503).

/** The largest balance written to Redis, as Lua reads it. */
const LUA_MAX = MAX_BALANCE_NANOS.toString();

/**
 * Lua functions over key names, shared by the gate's own RESERVE and the combined admission script (quota.ts).
 * `credit_check` answers: -1 the balance is not loaded; 1 this decision already holds a reservation (a retry);
 * 2 it fits; 0 it does not, with what is available (floored at 0); 3 fenced after a data loss, with the ms left;
 * 4 the account holds max_open reservations already.
 */
export const CREDIT_LUA_FUNCTIONS = `
local function credit_check(bal, resv, held, decision, amount, now, max_open, epoch)
  local loaded = redis.call('HMGET', bal, 'balance', 'fence', 'epoch')
  if not loaded[1] or loaded[3] ~= epoch then return -1, 0 end
  if redis.call('HEXISTS', resv, decision) == 1 then return 1, 0 end
  local fence = tonumber(loaded[2] or '0')
  if fence > now then return 3, fence - now end
  if redis.call('HLEN', resv) >= max_open then return 4, 0 end
  local balance = tonumber(loaded[1])
  local h = tonumber(redis.call('GET', held) or '0')
  local a = tonumber(amount)
  -- balance is within ±${LUA_MAX} and 0 <= h <= balance when positive: available is exact whenever it is >= 0.
  local available = balance - h
  if a <= ${LUA_MAX} and a <= available then return 2, 0 end
  if available < 0 then available = 0 end
  return 0, available
end

-- Spend caps, checked once credit_check said the amount fits (so held + amount <= balance <= ${LUA_MAX}, and every
-- figure compared below is exact): spent in the period (bal's 's:' fields, loaded and committed with the balance)
-- + open reservations (the key's in bud 'h:' fields, the account's in held) + amount must stay within the limit.
-- An empty field name means no budget. Returns 0 (fits), 5 (the key's budget) or 6 (the account's).
local function budget_check(bal, bud, held, key, amount, kfield, klimit, afield, alimit)
  local a = tonumber(amount)
  if kfield ~= '' then
    local room = tonumber(klimit) - tonumber(redis.call('HGET', bal, 's:' .. kfield) or '0')
    if tonumber(redis.call('HGET', bud, 'h:' .. key) or '0') + a > room then return 5 end
  end
  if afield ~= '' then
    local room = tonumber(alimit) - tonumber(redis.call('HGET', bal, 's:' .. afield) or '0')
    if tonumber(redis.call('GET', held) or '0') + a > room then return 6 end
  end
  return 0
end

-- bud and key: the key's open reservations (counted for its budget, whether it has one now or is given one later).
local function credit_hold(resv, exp, held, decision, amount, expiresAt, bud, key)
  redis.call('HSET', resv, decision, amount)
  redis.call('ZADD', exp, expiresAt, decision)
  redis.call('INCRBY', held, amount)
  if bud and key and key ~= '' then
    redis.call('HINCRBY', bud, 'h:' .. key, amount)
    redis.call('HSET', bud, 'r:' .. decision, key)
  end
end
`;

/**
 * KEYS: bal, resv, exp, held, bud. ARGV: decisionId, amount, expiresAt, now, maxOpen, epoch, keyId, key budget field,
 * its limit, account budget field, its limit ('' fields: no budget).
 * Returns {status (-1, 0, 1, 3, 4, 5 or 6), available or ms left}.
 */
const RESERVE = `${CREDIT_LUA_FUNCTIONS}${CLUSTER_GUARD_LUA}
if not credit_guard(ARGV[6]) then return {-2, '0'} end
local status, available = credit_check(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6])
if status == 2 then
  local over = budget_check(KEYS[1], KEYS[5], KEYS[4], ARGV[7], ARGV[2], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  if over > 0 then return {over, '0'} end
  credit_hold(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], KEYS[5], ARGV[7])
  status = 1
end
return {status, string.format('%.0f', available)}
`;

/**
 * KEYS: bal, epoch, fence, ver. ARGV: balance, version, ttlMs, knownEpoch, then spend totals as (field, spent) pairs
 * read with that version. Returns 0 (nothing written) when the dataset's epoch is not the known one: it lost data, or
 * this process has not seen it yet; 2 (nothing written) when a commit newer than this version already reached Redis
 * (and released its reservations): the balance was read before that commit and must be read again. The balance is
 * stamped with the epoch.
 */
const LOAD = `
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return 0 end
if tonumber(redis.call('GET', KEYS[4]) or '-1') > tonumber(ARGV[2]) then return 2 end
local v = redis.call('HGET', KEYS[1], 'version')
if v == false or tonumber(v) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'balance', ARGV[1], 'version', ARGV[2])
  for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[4])
local fence = redis.call('GET', KEYS[3])
if fence then redis.call('HSET', KEYS[1], 'fence', fence) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/**
 * KEYS: epoch, fence, server. ARGV: knownEpoch ('' for none), candidate, now, ttlMs, durable ('1' or '0').
 * Verifies the dataset for this connection: the server (run_id and replication id, read here, atomically with the
 * rest) is the one the dataset was last verified on, and it has an epoch: adopt it. Otherwise the dataset may have
 * lost reservations: no epoch though one was known (emptied), or another server (restarted or failed over, possibly
 * from older data, unless durable): write the candidate epoch and the fence. Returns {epoch, 0 | 1 emptied |
 * 2 another server}. A server that may evict keys (maxmemory-policy other than noeviction, volatile-* included) is
 * never verified (an error reply, TOLLGATE_EVICTING): an evicted fence, balance or reservation frees credit silently.
 */
const ATTACH = `
local policy = string.match(redis.call('INFO', 'memory'), 'maxmemory_policy:([%w%-]+)') or 'unknown'
if policy ~= 'noeviction' then
  return redis.error_reply('TOLLGATE_EVICTING maxmemory-policy is ' .. policy .. ', not noeviction')
end
local info = redis.call('INFO', 'server') .. redis.call('INFO', 'replication')
local server = (string.match(info, 'run_id:(%w+)') or '') .. ':' .. (string.match(info, 'master_replid:(%w+)') or '')
local current = redis.call('GET', KEYS[1])
local seen = redis.call('GET', KEYS[3])
if current and seen == server then return {current, 0} end
redis.call('SET', KEYS[3], server)
if current and ARGV[5] == '1' then return {current, 0} end
local lost = 0
if current then lost = 2 elseif ARGV[1] ~= '' then lost = 1 end
redis.call('SET', KEYS[1], ARGV[2])
if lost > 0 then redis.call('SET', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]), 'PX', ARGV[4]) end
return {ARGV[2], lost}
`;

/**
 * KEYS: bal, resv, exp, held, bud, ver. ARGV: version, balance, n, then n (field, spent) spend totals as of that
 * version, then the decisions the commit settled (their reservations released, the key's share included), then the
 * balance TTL. The newest version committed is kept in ver for a balance TTL (bal may have expired): a load that read
 * SQL before it is refused (LOAD answers 2), or it would bring back a balance without the cost of the reservations
 * this commit released.
 */
const COMMIT = `
local n = tonumber(ARGV[3])
local last = #ARGV - 1
if tonumber(ARGV[1]) >= 0 and tonumber(redis.call('GET', KEYS[6]) or '-1') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[#ARGV])
end
if tonumber(ARGV[1]) >= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  if tonumber(redis.call('HGET', KEYS[1], 'version')) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'balance', ARGV[2], 'version', ARGV[1])
    for i = 4, 3 + 2 * n, 2 do redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1]) end
  end
end
local released = 0
for i = 4 + 2 * n, last do
  local amount = redis.call('HGET', KEYS[2], ARGV[i])
  if amount then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('DECRBY', KEYS[4], amount)
    local key = redis.call('HGET', KEYS[5], 'r:' .. ARGV[i])
    if key then
      redis.call('HDEL', KEYS[5], 'r:' .. ARGV[i])
      if redis.call('HINCRBY', KEYS[5], 'h:' .. key, -tonumber(amount)) <= 0 then redis.call('HDEL', KEYS[5], 'h:' .. key) end
    end
    released = released + 1
  end
end
return released
`;

interface CreditCommands {
  tollgateCreditReserve(
    bal: string,
    resv: string,
    exp: string,
    held: string,
    bud: string,
    decision: string,
    amount: string,
    expiresAt: number,
    now: number,
    maxOpen: number,
    epoch: string,
    ...budget: string[]
  ): Promise<[number, string]>;
  tollgateCreditReserveGuarded(...keysThenArgv: Array<string | number>): Promise<[number, string]>;
  tollgateCreditLoad(
    bal: string,
    epoch: string,
    fence: string,
    ver: string,
    balance: string,
    version: number,
    ttlMs: number,
    known: string,
    ...spend: string[]
  ): Promise<number>;
  tollgateCreditAttach(
    epoch: string,
    fence: string,
    server: string,
    known: string,
    candidate: string,
    now: number,
    ttlMs: number,
    durable: string,
  ): Promise<[string, number]>;
  tollgateCreditCommit(
    bal: string,
    resv: string,
    exp: string,
    held: string,
    bud: string,
    ver: string,
    version: number,
    balance: string,
    ...spendDecisionsAndTtl: Array<string | number>
  ): Promise<number>;
}

/** How often a process re-adds an account to the sweep index (cheap insurance against a Redis restart). */
const INDEX_REFRESH_MS = 30_000;

/** Expired reservations read per account per sweep. */
const SWEEP_BATCH = 1000;

/** Options for the Redis credit gate. */
export interface RedisCreditGateOptions {
  redis: RedisConnection;
  source: BalanceSource;
  reservationTtlMs: number;
  /** Key prefix, `tollgate:` by default; tests give each run its own. */
  prefix?: string;
  /** How long a cached balance lives before it is re-read from SQL. */
  balanceTtlMs?: number;
  /** Open reservations one account may hold; more are refused (429) until some settle or expire. */
  maxOpenPerAccount?: number;
  /** Where the dataset epoch is remembered durably (SQL), so a process started after a data loss still fences. */
  epochs?: EpochStore;
  /**
   * The operator asserts that Redis keeps every acknowledged write across a restart and a failover (appendfsync
   * always, and synchronous replication to the replica that takes over): only an emptied dataset then fences, not a
   * restart or a failover.
   */
  durable?: boolean;
  /** The clock the fence is set by (admission's clock). */
  clock?: () => number;
  /** Told when this process found the dataset lost (emptied) or possibly stale (another server) and fenced credit. */
  onDataLoss?(info: { fencedUntil: number; cause: "emptied" | "server_changed" }): void;
  /** Told when verifying a fresh connection failed (it is retried while the connection stays up). */
  onVerifyError?(error: unknown): void;
}

/** Thrown by admission on a connection that has not been verified since it last (re)connected: a 503, never a guess. */
export class RedisUnverifiedError extends Error {
  override name = "RedisUnverifiedError";
  /**
   * Whether Redis was connected when this was thrown: then the dataset is reachable but not verified (the attach
   * script is slow or failing, or the dataset churns), which must never fail open (the fence exists for exactly that).
   */
  readonly connected: boolean;
  constructor(connected: boolean, options?: { cause?: unknown }) {
    super(
      "the Redis connection has not been verified since it (re)connected; credit is not decided on it yet",
      options,
    );
    this.connected = connected;
  }
}

/** Whether Redis refused a command for lack of permission (ACL: NOPERM, a renamed or disabled command). */
export function isRedisPermissionError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /NOPERM|no permissions|can't run this command|unknown command|not allowed/i.test(message);
}

/** What an operator must grant when the attach script is refused. */
export const REDIS_ACL_REQUIREMENT =
  "Tollgate's Redis user must be allowed INFO (it reads the server's run_id and replication id to detect a restart or failover): grant it with `ACL SETUSER <user> +info` (or `+@all` without `-@dangerous`), and do not rename or disable INFO";

/** Whether the attach script refused a Redis that may evict keys (maxmemory-policy other than noeviction). */
export function isRedisEvictionPolicyError(error: unknown): boolean {
  return (error instanceof Error ? error.message : String(error)).includes("TOLLGATE_EVICTING");
}

/** What an operator must set when the attach script finds an evicting Redis. */
export const REDIS_EVICTION_REQUIREMENT =
  "Redis must run with `maxmemory-policy noeviction` (an evicting policy, volatile-* included, can drop the data-loss fence, cached balances and open credit reservations, which frees credit silently): set it with `CONFIG SET maxmemory-policy noeviction` and in redis.conf (on a managed Redis, in its parameter group), on every primary";

/** Durable memory of the Redis dataset's epoch (one row in SQL per key prefix). */
export interface EpochStore {
  read(): Promise<string | null>;
  write(epoch: string): Promise<void>;
}

/**
 * Redis answers to the gate's outcome: status from credit_check (5, 6: budget_check refused for the key's or the
 * account's budget), figure = available or the fence's ms left.
 */
export function creditOutcome(
  status: number,
  figure: string,
  maxOpen: number,
  budgets?: readonly BudgetHold[],
): CreditReserveOutcome {
  if (status === 1) return { reserved: true };
  if (status === 5 || status === 6) {
    const budget = budgets?.find((b) => b.scope === (status === 5 ? "key" : "account"));
    if (budget) return { reserved: false, budget };
  }
  if (status === 3)
    return { reserved: false, fenced: true, retryAfterSeconds: Math.max(1, Math.ceil(Number(figure) / 1000)) };
  if (status === 4) return { reserved: false, inFlight: "account", limit: maxOpen };
  return { reserved: false, available: nanos(BigInt(figure)) };
}

/** An account's credit keys. */
export interface CreditKeys {
  bal: string;
  resv: string;
  exp: string;
  held: string;
  /** Budgets' share of the reservations: the key's open amount (`h:<key>`) and each reservation's key (`r:<decision>`). */
  bud: string;
  /** The newest balance version a commit brought to Redis, kept a balance TTL: older loads are refused. */
  ver: string;
  /** In a cluster: the slot's epoch and server keys, appended to a credit script's keys for credit_guard. */
  guard?: [epoch: string, server: string];
}

/**
 * A request's budgets as script arguments: its key, then the key's budget field and limit and the account's ('' when
 * there is none).
 */
export function budgetArgs(keyId: string | undefined, budgets: readonly BudgetHold[] | undefined): string[] {
  const key = budgets?.find((b) => b.scope === "key");
  const account = budgets?.find((b) => b.scope === "account");
  return [
    keyId ?? "",
    key?.field ?? "",
    key ? key.limit.toString() : "0",
    account?.field ?? "",
    account ? account.limit.toString() : "0",
  ];
}

/** Spend totals as (field, spent) script arguments, each clamped to what Lua holds exactly (it only refuses more). */
function spendArgs(spend: readonly SpendTotal[] | undefined): string[] {
  const out: string[] = [];
  for (const t of spend ?? []) out.push(t.field, clampBalance(t.spent).toString());
  return out;
}

/** The Redis gate, plus what the combined admission script (quota.ts) needs to reserve through it. */
export interface RedisCreditGate extends CreditReservations {
  /**
   * Runs a script that reserves credit for an account (alone, or together with a rate-limit admission): indexes the
   * account for the expiry sweep, and when the script answers −1 (balance not in Redis) loads it from SQL and runs
   * the script again.
   */
  reserveWith<R extends readonly unknown[]>(
    accountId: string,
    now: number,
    run: (keys: CreditKeys, expiresAt: number, epoch: string) => Promise<R>,
  ): Promise<R>;
  /** Open reservations one account may hold (the scripts' maxOpen argument). */
  readonly maxOpenPerAccount: number;
  /** Whether the connection was verified since it last (re)connected (readiness, and tests). */
  isVerified(): boolean;
  /** Resolves true once the connection is verified, false after `timeoutMs`. */
  whenVerified(timeoutMs: number): Promise<boolean>;
  /** Runs the attach script now and rethrows its failure, so start-up can refuse a Redis that denies it. */
  verifyNow(): Promise<void>;
}

/**
 * Credit reservations in Redis, shared by every authz replica: one atomic Lua script per admission (check the
 * balance minus held reservations, then hold), keys hash-tagged per account (`tollgate:{acct_…}:…`) so each Check's
 * script touches one slot. On one primary the dataset's epoch lives in `tollgate:{credit}:…` and each connection is
 * verified once; in a Redis Cluster every slot has its own epoch keys and each script checks its slot's server itself
 * (cluster-epochs.ts).
 */
export function createRedisCreditGate(options: RedisCreditGateOptions): RedisCreditGate {
  const prefix = options.prefix ?? "tollgate:";
  const balanceTtlMs = options.balanceTtlMs ?? 60_000;
  const maxOpenPerAccount = options.maxOpenPerAccount ?? 10_000;
  const ttlMs = options.reservationTtlMs;
  const redis = options.redis as RedisConnection & CreditCommands;
  const clock = options.clock ?? Date.now;
  if (typeof (redis as { tollgateCreditReserve?: unknown }).tollgateCreditReserve !== "function") {
    const reserveKeys = 5;
    options.redis.defineCommand("tollgateCreditReserve", { numberOfKeys: reserveKeys, lua: RESERVE });
    options.redis.defineCommand("tollgateCreditLoad", { numberOfKeys: 4, lua: LOAD });
    options.redis.defineCommand("tollgateCreditAttach", { numberOfKeys: 3, lua: ATTACH });
    options.redis.defineCommand("tollgateCreditCommit", { numberOfKeys: 6, lua: COMMIT });
    // A cluster appends the slot's epoch and server keys, always last (credit_guard, cluster-epochs.ts).
    options.redis.defineCommand("tollgateCreditReserveGuarded", { numberOfKeys: reserveKeys + 2, lua: RESERVE });
  }
  const accountKeys = (accountId: string): CreditKeys => {
    const base = `${prefix}{${accountId}}:`;
    return {
      bal: base + "bal",
      resv: base + "resv",
      exp: base + "exp",
      held: base + "held",
      bud: base + "bud",
      ver: base + "ver",
    };
  };
  const accountsKey = `${prefix}credit_accounts`;
  /** When this process last put each account in the sweep index. */
  const indexedAt = new Map<string, number>();
  const verification = isCluster(redis)
    ? clusterVerification(redis, prefix, { ...options, ttlMs, clock })
    : primaryVerification(
        createVerification(redis, {
          epochKeys: [`${prefix}{credit}:epoch`, `${prefix}{credit}:fence`, `${prefix}{credit}:server`],
          ttlMs,
          durable: options.durable ?? false,
          clock,
          epochs: options.epochs,
          onDataLoss: options.onDataLoss,
          onVerifyError: options.onVerifyError,
          // A new connection may be to a new (emptied) dataset: index every account again at its next admission.
          onDisconnect: () => indexedAt.clear(),
        }),
      );
  /** An account's keys; in a cluster with its slot's epoch and server keys for credit_guard. */
  const keys = (accountId: string): CreditKeys => {
    const k = accountKeys(accountId);
    const guard = verification.guard(k.bal);
    return guard ? { ...k, guard } : k;
  };

  /**
   * Verifies a cluster slot. When Redis answered but refused (INFO denied, a script error), the slot is connected and
   * unverified: never a reason to fail open. Unreachable or timing out stays a plain error (redis.fail_open applies).
   */
  async function attachSlot(now: number, bal: string): Promise<void> {
    try {
      await verification.attach(now, bal);
    } catch (error) {
      options.onVerifyError?.(error);
      const answered = error instanceof Error && error.name === "ReplyError";
      if (!answered) throw error;
      throw new RedisUnverifiedError(redis.status === "ready", { cause: error });
    }
  }

  async function load(accountId: string, now: number): Promise<void> {
    const read = async () =>
      (await options.source.balances([accountId], now)).get(accountId) ?? { balance: nanos(0n), version: 0 };
    let row = await read();
    const { bal, ver } = accountKeys(accountId);
    // A cluster slot this process has not used yet is verified first (one primary: the connection already was).
    if (!verification.hasEpoch(bal) && verification.guard(bal)) await attachSlot(now, bal);
    for (let attempt = 0, rereads = 0; attempt < 3; attempt++) {
      const [epochKey, fenceKey] = verification.loadKeys(bal);
      const loaded = await redis.tollgateCreditLoad(
        bal,
        epochKey,
        fenceKey,
        ver,
        clampBalance(row.balance).toString(),
        row.version,
        balanceTtlMs,
        verification.epoch(bal),
        ...spendArgs(row.spend),
      );
      if (loaded === 1) return;
      if (loaded === 2) {
        // A commit newer than what was read reached Redis meanwhile: read SQL again (it holds that commit now). A busy
        // account's commits may keep overtaking the read: those re-reads are not the epoch's attempts.
        if (++rereads < 10) attempt--;
        row = await read();
        continue;
      }
      try {
        await verification.attach(now, bal);
      } catch (error) {
        // Reverifying failed: the dataset is unverified (a 503 unless Redis went away), whatever the reason.
        throw new RedisUnverifiedError(redis.status === "ready", { cause: error });
      }
    }
    throw new RedisUnverifiedError(redis.status === "ready", {
      cause: new Error("credit balance could not be loaded into Redis: its epoch keeps changing"),
    });
  }

  async function reserveWith<R extends readonly unknown[]>(
    accountId: string,
    now: number,
    run: (keys: CreditKeys, expiresAt: number, epoch: string) => Promise<R>,
  ): Promise<R> {
    const k = keys(accountId);
    // Index first: an account holding a reservation is always found by the expiry sweep. Commands on one
    // connection run in order, so the index is written before the reservation without waiting a round trip for it;
    // and once per account per interval, since re-adding a member is a no-op (the interval covers a Redis restart).
    let indexed: Promise<unknown> | undefined;
    if ((indexedAt.get(accountId) ?? -Infinity) <= now - INDEX_REFRESH_MS) {
      indexed = redis.sadd(accountsKey, accountId).then(() => indexedAt.set(accountId, now));
      indexed.catch(() => undefined);
    }
    // Checks that arrive while a fresh connection is being verified (one round trip) wait for it, bounded; on a
    // fail-fast connection with Redis down they fail at once (a queueing one waits as its commands would).
    if (!verification.isVerified() && (redis.status === "ready" || queuesWhileDisconnected(redis)))
      await verification.whenVerified(commandTimeoutOf(redis) ?? VERIFY_WAIT_MS);
    // A cluster's nodes run commands independently: the index must be written before the reservation can be.
    if (indexed && k.guard) await indexed;
    // A cluster verifies each slot the first time the process uses it.
    if (k.guard && !verification.hasEpoch(k.bal)) await attachSlot(now, k.bal);
    for (let attempt = 0; attempt < 3; attempt++) {
      // Read synchronously just before the script is sent: an unverified connection decides nothing.
      const reply = await run(k, now + options.reservationTtlMs, verification.epoch(k.bal)).catch((error: unknown) => {
        // In a cluster each script verifies its slot's server itself: a refused INFO there is an unverified slot.
        if (k.guard && isRedisPermissionError(error)) {
          options.onVerifyError?.(error);
          throw new RedisUnverifiedError(redis.status === "ready", { cause: error });
        }
        // Redis answered but refused the script (OOM at maxmemory, BUSY, READONLY, LOADING): it is connected, so
        // this is never a reason to fail open (redis.fail_open covers only a Redis that is unreachable or timing out).
        if (error instanceof Error && error.name === "ReplyError")
          throw new RedisUnverifiedError(redis.status === "ready", { cause: error });
        throw error;
      });
      if (reply[0] === -2) {
        // The slot's server or epoch is not the one verified (a failover, a restart): verify it again first.
        await attachSlot(now, k.bal);
        continue;
      }
      if (reply[0] !== -1) {
        if (indexed) await indexed;
        return reply;
      }
      await load(accountId, now);
    }
    throw new RedisUnverifiedError(redis.status === "ready", {
      cause: new Error("credit balance could not be loaded into Redis, or its slot could not be verified"),
    });
  }

  return {
    reserveWith,
    maxOpenPerAccount,
    isVerified: verification.isVerified,
    whenVerified: verification.whenVerified,
    verifyNow: () => verification.attach(clock()),
    async reserve({ accountId, decisionId, amount, now, keyId, budgets }) {
      const [status, figure] = await reserveWith(accountId, now, (k, expiresAt, epoch) => {
        const argv = [
          decisionId,
          amount.toString(),
          expiresAt,
          now,
          maxOpenPerAccount,
          epoch,
          ...budgetArgs(keyId, budgets),
        ];
        if (k.guard)
          return redis.tollgateCreditReserveGuarded(k.bal, k.resv, k.exp, k.held, k.bud, ...k.guard, ...argv);
        return redis.tollgateCreditReserve(
          k.bal,
          k.resv,
          k.exp,
          k.held,
          k.bud,
          decisionId,
          amount.toString(),
          expiresAt,
          now,
          maxOpenPerAccount,
          epoch,
          ...budgetArgs(keyId, budgets),
        );
      });
      return creditOutcome(status, figure, maxOpenPerAccount, budgets);
    },
    async committed(changes: readonly BalanceChange[]) {
      if (changes.length === 0) return;
      // One command per account, sent together (auto-pipelined): a pipeline must stay on one Cluster node.
      const results = await Promise.allSettled(
        changes.map((c) => {
          const k = keys(c.accountId);
          const spend = spendArgs(c.spend);
          return redis.tollgateCreditCommit(
            k.bal,
            k.resv,
            k.exp,
            k.held,
            k.bud,
            k.ver,
            c.version,
            clampBalance(c.balance).toString(),
            spend.length / 2,
            ...spend,
            ...c.settled,
            balanceTtlMs,
          );
        }),
      );
      for (const result of results) if (result.status === "rejected") throw result.reason;
    },
    async expired(now) {
      const out: ExpiredReservation[] = [];
      const accounts = await redis.smembers(accountsKey);
      for (const accountId of accounts) {
        const k = keys(accountId);
        // Bounded per account and sweep: a backlog (a meter down for an hour) is worked off over several sweeps instead
        // of one unbounded read (a huge HMGET overflows ioredis' argument handling and takes the process down).
        const decisions = await redis.zrangebyscore(k.exp, "-inf", now, "LIMIT", 0, SWEEP_BATCH);
        if (decisions.length === 0) continue;
        const amounts = await redis.hmget(k.resv, ...decisions);
        const keyIds = await redis.hmget(k.bud, ...decisions.map((d) => `r:${d}`));
        const orphans: string[] = [];
        decisions.forEach((decisionId, i) => {
          const amount = amounts[i];
          if (amount !== null && amount !== undefined)
            out.push({ accountId, decisionId, amount: nanos(BigInt(amount)), keyId: keyIds[i] ?? undefined });
          else orphans.push(decisionId);
        });
        // An expiry with no reservation behind it would sit at the head of the batch forever; drop it.
        if (orphans.length > 0) await redis.zrem(k.exp, ...orphans);
      }
      return out;
    },
    async refresh() {
      // Cached balances expire and reload from SQL; nothing to poll.
    },
    async budgetUsage(accountId, keyId, budgets) {
      const k = keys(accountId);
      const now = clock();
      if ((await redis.exists(k.bal)) === 0) await load(accountId, now);
      const spent = budgets.length ? await redis.hmget(k.bal, ...budgets.map((b) => `s:${b.field}`)) : [];
      const [keyHeld, accountHeld] = await Promise.all([redis.hget(k.bud, `h:${keyId}`), redis.get(k.held)]);
      return budgets.map((hold, i) => ({
        hold,
        spent: nanos(BigInt(spent[i] ?? "0")),
        held: nanos(BigInt((hold.scope === "key" ? keyHeld : accountHeld) ?? "0")),
      }));
    },
    async openReservations() {
      const accounts = await redis.smembers(accountsKey);
      if (accounts.length === 0) return 0;
      const counts = await Promise.all(accounts.map((accountId) => redis.hlen(keys(accountId).resv)));
      return counts.reduce((open, count) => open + count, 0);
    },
    async close() {
      verification.close();
    },
  };
}

/** How the gate verifies the dataset, on one primary or per slot of a cluster (`key` is the account's balance key). */
interface DatasetVerification {
  /** The epoch and fence keys the load script reads with `key`. */
  loadKeys(key: string): [epoch: string, fence: string];
  /** The keys credit_guard checks (a cluster), or undefined (one primary: the connection is verified instead). */
  guard(key: string): [epoch: string, server: string] | undefined;
  /** Whether an epoch was verified for `key`'s dataset. */
  hasEpoch(key: string): boolean;
  /** The verified epoch for `key`; throws RedisUnverifiedError (a 503) when there is none. */
  epoch(key: string): string;
  /** Verifies (again) the dataset `key` lives in (any, without a key). */
  attach(now: number, key?: string): Promise<void>;
  isVerified(): boolean;
  whenVerified(timeoutMs: number): Promise<boolean>;
  close(): void;
}

/** One primary: one dataset, verified per connection. */
function primaryVerification(v: ReturnType<typeof createVerification>): DatasetVerification {
  const [epochKey, fenceKey] = v.epochKeys;
  return {
    loadKeys: () => [epochKey, fenceKey],
    guard: () => undefined,
    hasEpoch: () => v.isVerified(),
    epoch: () => v.epoch(),
    attach: (now) => v.attach(now),
    isVerified: v.isVerified,
    whenVerified: v.whenVerified,
    close: v.close,
  };
}

/** A Redis Cluster: one dataset per slot, each script checking its slot's server itself (cluster-epochs.ts). */
function clusterVerification(
  redis: RedisConnection & CreditCommands,
  prefix: string,
  options: RedisCreditGateOptions & { ttlMs: number; clock: () => number },
): DatasetVerification {
  const slots = createSlotVerification({
    redis,
    prefix,
    ttlMs: options.ttlMs,
    clock: options.clock,
    epochs: options.epochs,
    onDataLoss: options.onDataLoss,
    onVerifyError: options.onVerifyError,
    runAttach: ([epoch, fence, server], known, candidate, now) =>
      redis.tollgateCreditAttach(
        epoch,
        fence,
        server,
        known,
        candidate,
        now,
        options.ttlMs,
        options.durable ? "1" : "0",
      ),
  });
  return {
    loadKeys(key) {
      const [epoch, fence] = slots.keysOf(keySlot(key));
      return [epoch, fence];
    },
    guard(key) {
      const [epoch, , server] = slots.keysOf(keySlot(key));
      return [epoch, server];
    },
    hasEpoch: (key) => slots.epoch(keySlot(key)) !== undefined,
    epoch(key) {
      const epoch = slots.epoch(keySlot(key));
      if (epoch === undefined) throw new RedisUnverifiedError(redis.status === "ready");
      return epoch;
    },
    attach: (now, key) => slots.attach(key === undefined ? 0 : keySlot(key), now),
    isVerified: slots.isVerified,
    whenVerified: slots.whenVerified,
    close: slots.close,
  };
}

/** What verifying a connection needs. */
interface VerificationOptions {
  /** epoch, fence and server keys (one hash tag). */
  epochKeys: [string, string, string];
  ttlMs: number;
  durable: boolean;
  clock: () => number;
  epochs?: EpochStore;
  onDataLoss?: RedisCreditGateOptions["onDataLoss"];
  onVerifyError?(error: unknown): void;
  onDisconnect(): void;
}

/** How long an admission waits for a fresh connection's verification before it answers 503 (or the command timeout). */
const VERIFY_WAIT_MS = 1000;

/** How long a failed verification (SQL or Redis hiccup) waits before it is tried again on the same connection. */
const VERIFY_RETRY_MS = 250;

/**
 * The epoch this connection was verified under: cleared synchronously when the connection closes (ioredis emits
 * 'close' before it reconnects, and a hot-path connection neither queues nor retries commands), set again only by
 * the attach script run on the new connection. So no admission script runs on a connection before the server behind
 * it was compared with the dataset's.
 */
function createVerification(redis: RedisConnection & CreditCommands, options: VerificationOptions) {
  const [epochKey, fenceKey, serverKey] = options.epochKeys;
  /** The dataset epoch this process knows ('' before any): read from SQL once, then whatever attach adopted. */
  let known: Promise<string> | undefined;
  let verified: string | undefined;
  /** Bumped on every disconnect, so an attach that started on an older connection verifies nothing. */
  let connection = 0;
  let attaching: Promise<void> | undefined;
  let closed = false;
  const waiters = new Set<() => void>();

  function knownEpoch(): Promise<string> {
    if (!known) {
      known = (options.epochs?.read() ?? Promise.resolve(null)).then((epoch) => epoch ?? "");
      known.catch(() => (known = undefined));
    }
    return known;
  }

  /** Runs the attach script on the current connection and, if it is still the same one, verifies it. */
  function attach(now: number): Promise<void> {
    attaching ??= (async () => {
      const on = connection;
      const before = await knownEpoch();
      const [epoch, lost] = await redis.tollgateCreditAttach(
        epochKey,
        fenceKey,
        serverKey,
        before,
        randomUUID(),
        now,
        options.ttlMs,
        options.durable ? "1" : "0",
      );
      if (epoch !== before && options.epochs) {
        // Only the first epoch must reach SQL before it is used (it is what lets a later process tell an emptied
        // dataset from a new one); a later one is remembered on a best-effort basis, so a Redis reconnect while
        // SQL is down does not stop admissions: any older epoch in SQL still differs from an emptied dataset's none.
        const written = options.epochs.write(epoch);
        if (before === "") await written;
        else written.catch((error: unknown) => options.onVerifyError?.(error));
      }
      known = Promise.resolve(epoch);
      if (Number(lost) > 0)
        options.onDataLoss?.({
          fencedUntil: now + options.ttlMs,
          cause: Number(lost) === 1 ? "emptied" : "server_changed",
        });
      if (on === connection && redis.status === "ready") {
        verified = epoch;
        for (const wake of waiters) wake();
      }
    })().finally(() => (attaching = undefined));
    return attaching;
  }

  function verify(): void {
    const on = connection;
    const stillOurs = () => !closed && on === connection && verified === undefined && redis.status === "ready";
    attach(options.clock()).then(
      () => {
        // The attach we joined had started on an older connection: run one on this one.
        if (stillOurs()) verify();
      },
      (error: unknown) => {
        options.onVerifyError?.(error);
        const timer = setTimeout(() => {
          if (stillOurs()) verify();
        }, VERIFY_RETRY_MS);
        timer.unref();
      },
    );
  }

  const onClose = () => {
    verified = undefined;
    connection++;
    options.onDisconnect();
  };
  // Processes that remember the epoch in SQL (authz, meter) verify as soon as a connection is ready; a gate without
  // that memory (a one-shot CLI command) verifies only if it reserves, so it never vouches for a dataset on its own.
  const onReady = () => {
    if (redis.status === "ready" && (options.epochs || waiters.size > 0)) verify();
  };
  redis.on("close", onClose);
  redis.on("ready", onReady);
  onReady();

  return {
    epochKeys: options.epochKeys,
    attach,
    /** The verified epoch; throws (a 503) when the connection has not been verified since it last connected. */
    epoch(): string {
      if (verified === undefined) throw new RedisUnverifiedError(redis.status === "ready");
      return verified;
    },
    isVerified: () => verified !== undefined,
    whenVerified(timeoutMs: number): Promise<boolean> {
      if (verified !== undefined) return Promise.resolve(true);
      if (!attaching && redis.status === "ready") verify();
      return new Promise<boolean>((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(ok);
        };
        const wake = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        waiters.add(wake);
      });
    },
    close() {
      closed = true;
      redis.off("close", onClose);
      redis.off("ready", onReady);
    },
  };
}
