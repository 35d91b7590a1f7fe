import type { Redis } from "ioredis";
import type { CreditReservations } from "../../domain/credits.js";
import type { BalanceChange, BalanceSource, ExpiredReservation } from "../../domain/metering.js";
import { nanos } from "../../domain/money.js";

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
// - Lua numbers are doubles: amounts are exact below 2^53 nano-USD (about 9 million USD per account); the script
//   raises an error above that instead of rounding.

/**
 * Lua functions over key names, shared by the gate's own RESERVE and the combined admission script (quota.ts).
 * `credit_check` answers: -1 the balance is not loaded; 1 this decision already holds a reservation (a retry);
 * 2 it fits; 0 it does not, with what is available (floored at 0).
 */
export const CREDIT_LUA_FUNCTIONS = `
local function credit_check(bal, resv, held, decision, amount)
  local loaded = redis.call('HGET', bal, 'balance')
  if not loaded then return -1, 0 end
  if redis.call('HEXISTS', resv, decision) == 1 then return 1, 0 end
  local limit = 9007199254740991
  local balance = tonumber(loaded)
  local h = tonumber(redis.call('GET', held) or '0')
  local a = tonumber(amount)
  if math.abs(balance) > limit or h > limit or a > limit then error({err = 'credit amount beyond 2^53 nano-USD'}) end
  local available = balance - h
  if a <= available then return 2, 0 end
  if available < 0 then available = 0 end
  return 0, available
end

local function credit_hold(resv, exp, held, decision, amount, expiresAt)
  redis.call('HSET', resv, decision, amount)
  redis.call('ZADD', exp, expiresAt, decision)
  redis.call('INCRBY', held, amount)
end
`;

/** KEYS: bal, resv, exp, held. ARGV: decisionId, amount, expiresAt. Returns {status (-1, 0 or 1), available}. */
const RESERVE = `${CREDIT_LUA_FUNCTIONS}
local status, available = credit_check(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2])
if status == 2 then
  credit_hold(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
  status = 1
end
return {status, string.format('%.0f', available)}
`;

const LOAD = `
local v = redis.call('HGET', KEYS[1], 'version')
if v == false or tonumber(v) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'balance', ARGV[1], 'version', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

const COMMIT = `
if tonumber(ARGV[1]) >= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  if tonumber(redis.call('HGET', KEYS[1], 'version')) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'balance', ARGV[2], 'version', ARGV[1])
  end
end
local released = 0
for i = 3, #ARGV do
  local amount = redis.call('HGET', KEYS[2], ARGV[i])
  if amount then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('DECRBY', KEYS[4], amount)
    released = released + 1
  end
end
return released
`;

interface CreditCommands {
  tollgateCreditReserve(bal: string, resv: string, exp: string, held: string, decision: string, amount: string, expiresAt: number): Promise<[number, string]>;
  tollgateCreditLoad(bal: string, balance: string, version: number, ttlMs: number): Promise<number>;
  tollgateCreditCommit(bal: string, resv: string, exp: string, held: string, version: number, balance: string, ...decisions: string[]): Promise<number>;
}

/** How often a process re-adds an account to the sweep index (cheap insurance against a Redis restart). */
const INDEX_REFRESH_MS = 30_000;

/** Expired reservations read per account per sweep. */
const SWEEP_BATCH = 1000;

/** Options for the Redis credit gate. */
export interface RedisCreditGateOptions {
  redis: Redis;
  source: BalanceSource;
  reservationTtlMs: number;
  /** Key prefix, `tollgate:` by default; tests give each run its own. */
  prefix?: string;
  /** How long a cached balance lives before it is re-read from SQL. */
  balanceTtlMs?: number;
}

/** An account's credit keys. */
export interface CreditKeys {
  bal: string;
  resv: string;
  exp: string;
  held: string;
}

/** The Redis gate, plus what the combined admission script (quota.ts) needs to reserve through it. */
export interface RedisCreditGate extends CreditReservations {
  /**
   * Runs a script that reserves credit for an account (alone, or together with a rate-limit admission): indexes the
   * account for the expiry sweep, and when the script answers −1 (balance not in Redis) loads it from SQL and runs
   * the script again.
   */
  reserveWith<R extends readonly unknown[]>(accountId: string, now: number, run: (keys: CreditKeys, expiresAt: number) => Promise<R>): Promise<R>;
}

/**
 * Credit reservations in Redis, shared by every authz replica: one atomic Lua script per admission (check the
 * balance minus held reservations, then hold), keys hash-tagged per account (`tollgate:{acct_…}:…`) so each script
 * touches one cluster slot.
 */
export function createRedisCreditGate(options: RedisCreditGateOptions): RedisCreditGate {
  const prefix = options.prefix ?? "tollgate:";
  const balanceTtlMs = options.balanceTtlMs ?? 60_000;
  const redis = options.redis as Redis & CreditCommands;
  if (typeof (redis as { tollgateCreditReserve?: unknown }).tollgateCreditReserve !== "function") {
    options.redis.defineCommand("tollgateCreditReserve", { numberOfKeys: 4, lua: RESERVE });
    options.redis.defineCommand("tollgateCreditLoad", { numberOfKeys: 1, lua: LOAD });
    options.redis.defineCommand("tollgateCreditCommit", { numberOfKeys: 4, lua: COMMIT });
  }
  const keys = (accountId: string): CreditKeys => {
    const base = `${prefix}{${accountId}}:`;
    return { bal: base + "bal", resv: base + "resv", exp: base + "exp", held: base + "held" };
  };
  const accountsKey = `${prefix}credit_accounts`;
  /** When this process last put each account in the sweep index. */
  const indexedAt = new Map<string, number>();

  async function load(accountId: string): Promise<void> {
    const row = (await options.source.balances([accountId])).get(accountId) ?? { balance: nanos(0n), version: 0 };
    await redis.tollgateCreditLoad(keys(accountId).bal, row.balance.toString(), row.version, balanceTtlMs);
  }

  async function reserveWith<R extends readonly unknown[]>(accountId: string, now: number, run: (keys: CreditKeys, expiresAt: number) => Promise<R>): Promise<R> {
    const k = keys(accountId);
    // Index first: an account holding a reservation is always found by the expiry sweep. Commands on one
    // connection run in order, so the index is written before the reservation without waiting a round trip for it;
    // and once per account per interval, since re-adding a member is a no-op (the interval covers a Redis restart).
    let indexed: Promise<unknown> | undefined;
    if ((indexedAt.get(accountId) ?? -Infinity) <= now - INDEX_REFRESH_MS) {
      indexed = redis.sadd(accountsKey, accountId).then(() => indexedAt.set(accountId, now));
      indexed.catch(() => undefined);
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const reply = await run(k, now + options.reservationTtlMs);
      if (reply[0] !== -1) {
        if (indexed) await indexed;
        return reply;
      }
      await load(accountId);
    }
    throw new Error("credit balance could not be loaded into Redis");
  }

  return {
    reserveWith,
    async reserve({ accountId, decisionId, amount, now }) {
      const [status, available] = await reserveWith(accountId, now, (k, expiresAt) =>
        redis.tollgateCreditReserve(k.bal, k.resv, k.exp, k.held, decisionId, amount.toString(), expiresAt),
      );
      return status === 1 ? { reserved: true } : { reserved: false, available: nanos(BigInt(available)) };
    },
    async committed(changes: readonly BalanceChange[]) {
      if (changes.length === 0) return;
      const pipeline = redis.pipeline() as ReturnType<Redis["pipeline"]> & { tollgateCreditCommit(...args: unknown[]): unknown };
      for (const c of changes) {
        const k = keys(c.accountId);
        pipeline.tollgateCreditCommit(k.bal, k.resv, k.exp, k.held, c.version, c.balance.toString(), ...c.settled);
      }
      const results = await pipeline.exec();
      for (const [error] of results ?? []) if (error) throw error;
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
        const orphans: string[] = [];
        decisions.forEach((decisionId, i) => {
          const amount = amounts[i];
          if (amount !== null && amount !== undefined) out.push({ accountId, decisionId, amount: nanos(BigInt(amount)) });
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
    async openReservations() {
      const accounts = await redis.smembers(accountsKey);
      if (accounts.length === 0) return 0;
      const pipeline = redis.pipeline();
      for (const accountId of accounts) pipeline.hlen(keys(accountId).resv);
      let open = 0;
      for (const [error, count] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        open += Number(count);
      }
      return open;
    },
    async close() {},
  };
}
