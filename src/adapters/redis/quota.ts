import { creditRefused, type HoldOutcome, type HoldRequest, type Quota } from "../../domain/admission.js";
import { releaseReservations } from "../../domain/credits.js";
import { MAX_BALANCE_NANOS } from "../../domain/money.js";
import { DAY_MS, dayOf, RATE_WINDOW_MS } from "../../domain/rate-limit.js";
import type { RedisConnection } from "./client.js";
import { CLUSTER_GUARD_LUA } from "./cluster-epochs.js";
import {
  budgetArgs,
  CREDIT_LUA_FUNCTIONS,
  creditOutcome,
  RedisUnverifiedError,
  type RedisCreditGate,
} from "./credit-gate.js";
import { decisionFromReply, quotaArgs, type RateReply } from "./rate-limiter.js";
import { quotaKeys, RATE_LUA_FUNCTIONS, RELEASE_LUA, rateKeys } from "./rate-limit-scripts.js";

/** The limits a run's decisions share (limitArgs), as the script reads them. */
type LimitArgs = [
  requestsPerMinute: number,
  tokensPerMinute: number,
  keyBudgetField: string,
  keyBudgetLimit: string,
  accountBudgetField: string,
  accountBudgetLimit: string,
  ...quotas: ReturnType<typeof quotaArgs>,
];
/** Fails to compile when LimitArgs changes length without this count (and the script's ARGV[6..14]) following. */
const LIMIT_COUNT: LimitArgs["length"] = 9;
/** ARGV entries shared by a run's decisions: window, maxOpen, epoch, key, reservation ttl, then limitArgs. */
const SHARED = 5 + LIMIT_COUNT;
/** ARGV entries per decision after the shared ones: decisionId, now, tokens, amount. */
const PER_DECISION = 4;
/** Reply entries per decision: the rate reply (RateReply, 10) and the credit figure. */
const REPLY_STRIDE = 11;
/** Decisions per script run at most, so one run holds Redis for well under a millisecond. */
const MAX_BATCH = 32;

/**
 * Decides requests of one API key, each by the same steps, in order, inside one atomic script: exactly what that
 * many one-decision runs would decide, back to back. Per decision it holds the rate limit and the credit reservation
 * together or neither: the limiter's window first (a 429 outranks a 402, as with separate ports), then the account's
 * balance minus its open reservations.
 * Then the key's and the account's spend caps (budget_check), which a credit refusal outranks.
 * The key's daily quotas and requests in flight (key_decide's checks) come after the window and before credit.
 * KEYS: req, tok (the key's window), bal, resv, exp, held, bud (its account's credit and budgets), day, conc (the
 * key's day and requests in flight), all under the account's hash tag.
 * ARGV: windowMs, maxOpen (reservations per account), the dataset epoch the connection was verified under, the key id,
 * the reservation's ttl in ms, and the limits every decision of the run shares (limitArgs: requestsPerMinute,
 * tokensPerMinute, the budgets as key budget field and limit, account budget field and limit, '' fields for none,
 * requestsPerDay, tokensPerDay, maxConcurrency, 0 for none); then per decision: decisionId, now, tokens, amount. A
 * reservation expires at now + ttl, and a place in flight lasts as long.
 * Returns per decision the rate reply (RateReply: status, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt,
 * inFlightTokens, refusedBy, requestsToday, tokensToday) and the credit figure, flat: status 1
 * held, 0 refused by the limiter, 2 refused for credit (figure = what is available), 3 fenced after a Redis data loss
 * (figure = ms left), 4 the account has maxOpen reservations open, 5 or 6 refused by the key's or the account's
 * budget; or {-1} alone when the balance is not loaded (read
 * before anything is written, so nothing was); or {-2} alone when, in a cluster, the slot is not verified on this server.
 * In a cluster the slot's epoch and server keys follow the others, as the last two KEYS (credit_guard).
 */
const HOLD_LUA = `${RATE_LUA_FUNCTIONS}${CREDIT_LUA_FUNCTIONS}${CLUSTER_GUARD_LUA}
local window = tonumber(ARGV[1])
local max_open = tonumber(ARGV[2])
local epoch = ARGV[3]
-- In a cluster: the slot must be verified on the server running this, or nothing is decided here (-2).
if not credit_guard(epoch) then return {-2} end
local key = ARGV[4]
local ttl = tonumber(ARGV[5])
local rpm, tpm = tonumber(ARGV[6]), tonumber(ARGV[7])
local kfield, klimit, afield, alimit = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local rpd, tpd, maxc = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local out = {}

-- The common case, a decision that is simply held, costs one command (HEXISTS) instead of a dozen: the figures the
-- steps below read are read once (fast_read) and kept current here while holds are queued, and the queued writes go
-- out in one command per key (flush) before anything else reads or writes those keys, and at the end. Only a decision
-- that every check lets through is decided here (fast_hold); anything else (a refusal, a retry, daily quotas or
-- requests in flight, an entry to prune from the window) flushes and is decided by the steps below, as if alone.
local f = nil
-- A run of one decision gains nothing by it (the figures are read and written once either way); daily quotas and
-- requests in flight are decided step by step.
local batched = #ARGV >= ${SHARED} + 2 * ${PER_DECISION} and rpd <= 0 and tpd <= 0 and maxc <= 0
local function fast_read()
  local loaded = redis.call('HMGET', KEYS[3], 'balance', 'fence', 'epoch')
  if not loaded[1] or loaded[3] ~= epoch then return nil end
  local figures = redis.call('HMGET', KEYS[2], '#sum', '#newest', '#exp', '#fly')
  local count = redis.call('ZCARD', KEYS[1])
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local s = {
    balance = tonumber(loaded[1]), fence = tonumber(loaded[2] or '0'),
    held = tonumber(redis.call('GET', KEYS[6]) or '0'), open = redis.call('HLEN', KEYS[4]),
    key_held = nil, spent = {},
    count = count, sum = tonumber(figures[1] or '0'), fly = tonumber(figures[4] or '0'), newest = -1,
    refreshed = tonumber(figures[3]), oldest = nil, first = nil, refresh = false,
    queued = 0, added = 0, seen = {}, resv = {}, exp = {}, bud = {}, req = {}, tok = {},
  }
  if count > 0 then s.newest = tonumber(figures[2]) or rate_newest(KEYS[1]) end
  if #oldest > 0 then s.oldest = tonumber(oldest[2]) end
  return s
end
local function spent_in(field)
  if f.spent[field] == nil then f.spent[field] = tonumber(redis.call('HGET', KEYS[3], 's:' .. field) or '0') end
  return f.spent[field]
end
-- credit_check, rate_check, budget_check, then credit_hold and rate_hold, on the kept figures: the reply when held, or
-- nil when any step would not simply hold.
local function fast_hold(decision, now, rpm, tpm, need, amount, expires_at, kfield, klimit, afield, alimit)
  if f.seen[decision] or redis.call('HEXISTS', KEYS[4], decision) == 1 then return nil end
  if f.fence > now or f.open + f.queued >= max_open then return nil end
  local a = tonumber(amount)
  local held = f.held + f.added
  if not (a <= ${MAX_BALANCE_NANOS} and a <= f.balance - held) then return nil end
  local cutoff = now - window
  if (f.oldest and f.oldest <= cutoff) or (f.first and f.first <= cutoff) then return nil end
  if f.count + 1 > rpm or f.sum + need > tpm then return nil end
  if kfield ~= '' then
    -- Read on first use: most keys have no budget.
    if f.key_held == nil then f.key_held = tonumber(redis.call('HGET', KEYS[7], 'h:' .. key) or '0') end
    if f.key_held + f.added + a > tonumber(klimit) - spent_in(kfield) then return nil end
  end
  if afield ~= '' and held + a > tonumber(alimit) - spent_in(afield) then return nil end
  f.queued = f.queued + 1
  f.seen[decision] = true
  f.added = f.added + a
  local r, e, b, q, t = f.resv, f.exp, f.bud, f.req, f.tok
  r[#r + 1] = decision; r[#r + 1] = amount
  e[#e + 1] = expires_at; e[#e + 1] = decision
  b[#b + 1] = 'r:' .. decision; b[#b + 1] = key
  q[#q + 1] = now; q[#q + 1] = decision
  t[#t + 1] = decision; t[#t + 1] = 0 - need
  if f.first == nil or now < f.first then f.first = now end
  if f.refreshed == nil or now - f.refreshed >= 5000 or now < f.refreshed then
    f.refreshed = now
    f.refresh = true
  end
  f.newest = math.max(now, f.newest)
  f.count = f.count + 1
  f.sum = f.sum + need
  f.fly = f.fly + need
  return {1, 0, 0, f.count, f.sum, f.newest, 0, 0, -1, -1}
end
-- The queued holds' writes, in credit_hold's and rate_hold's order; the keys end as those holds one by one leave them.
local function flush()
  if f == nil then return end
  if f.queued > 0 then
    redis.call('HSET', KEYS[4], unpack(f.resv))
    redis.call('ZADD', KEYS[5], unpack(f.exp))
    redis.call('INCRBY', KEYS[6], string.format('%.0f', f.added))
    if key ~= '' then
      redis.call('HINCRBY', KEYS[7], 'h:' .. key, string.format('%.0f', f.added))
      redis.call('HSET', KEYS[7], unpack(f.bud))
    end
    redis.call('ZADD', KEYS[1], unpack(f.req))
    local t = f.tok
    t[#t + 1] = '#newest'; t[#t + 1] = f.newest
    t[#t + 1] = '#sum'; t[#t + 1] = string.format('%.0f', f.sum)
    t[#t + 1] = '#fly'; t[#t + 1] = string.format('%.0f', f.fly)
    if f.refresh then t[#t + 1] = '#exp'; t[#t + 1] = f.refreshed end
    redis.call('HSET', KEYS[2], unpack(t))
    if f.refresh then
      redis.call('PEXPIRE', KEYS[1], window + 10000)
      redis.call('PEXPIRE', KEYS[2], window + 10000)
    end
  end
  f = nil
end

for i = ${SHARED} + 1, #ARGV, ${PER_DECISION} do
  local decision = ARGV[i]
  local now = tonumber(ARGV[i + 1])
  local need = tonumber(ARGV[i + 2])
  local amount = ARGV[i + 3]
  local expires_at = now + ttl
  -- msToNextDay: exact in doubles for any integer ms below 2^53.
  local to_midnight = ${DAY_MS} - now % ${DAY_MS}
  local reply = nil
  if batched then
    if f == nil then f = fast_read() end
    -- Not loaded: only the first decision can see this (nothing queued or written yet).
    if f == nil then return {-1} end
    reply = fast_hold(decision, now, rpm, tpm, need, amount, expires_at, kfield, klimit, afield, alimit)
  end
  local figure = '0'
  if reply == nil then
    flush()
    local status, available = credit_check(KEYS[3], KEYS[4], KEYS[6], decision, amount, now, max_open, epoch)
    -- Only the first decision can see this (a script's keys do not expire while it runs), before any write.
    if status == -1 then return {-1} end
    local w, rate = rate_check(KEYS[1], KEYS[2], now, window, rpm, tpm, need)
    local d = day_read(KEYS[8], rpd, tpd)
    -- A retry of a decision held before (status 1) already has its place today and in flight.
    local q = nil
    if not rate and status ~= 1 then q = quota_refusal(d, KEYS[9], now, rpd, tpd, maxc, need, to_midnight) end
    if rate then
      reply = with_day(rate, d, 0)
    elseif q then
      reply = with_day({0, q[2], 0, w.count, w.sum, w.newest, q[3]}, d, q[1])
    elseif status == 0 or status == 3 or status == 4 then
      reply = with_day({status == 0 and 2 or status, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
      figure = string.format('%.0f', available)
    elseif status == 1 then
      -- This decision was held before (both parts, atomically): answer as then without holding twice.
      reply = with_day({1, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
    else
      local over = budget_check(KEYS[3], KEYS[7], KEYS[6], key, amount, kfield, klimit, afield, alimit)
      if over > 0 then
        reply = with_day({over, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
      else
        -- The key's share is tracked whether or not it has a budget now: a budget set while its requests are in flight
        -- holds them too (as the in-process gate does), and their expiry charges are the key's spend.
        credit_hold(KEYS[4], KEYS[5], KEYS[6], decision, amount, expires_at, KEYS[7], key)
        quota_hold(KEYS[8], KEYS[9], d, need, decision, now, to_midnight, maxc, ttl)
        reply = with_day(rate_hold(KEYS[1], KEYS[2], now, window, need, decision, w), d, 0)
      end
    end
  end
  reply[${REPLY_STRIDE}] = figure
  for j = 1, ${REPLY_STRIDE} do out[#out + 1] = reply[j] end
end
flush()
return out
`;

/** The limits a run's decisions share, in the script's order. */
function limitArgs(r: HoldRequest): LimitArgs {
  const [, keyField, keyLimit, accountField, accountLimit] = budgetArgs(r.keyId, r.budgets);
  return [r.requestsPerMinute, r.tokensPerMinute, keyField!, keyLimit!, accountField!, accountLimit!, ...quotaArgs(r)];
}

/**
 * Whether two requests of one key have the same limits, so one run can decide both. Budgets are compared by content:
 * each request has its own array.
 */
function sameLimits(a: HoldRequest, b: HoldRequest): boolean {
  if (a.requestsPerMinute !== b.requestsPerMinute || a.tokensPerMinute !== b.tokensPerMinute) return false;
  if ((a.requestsPerDay ?? 0) !== (b.requestsPerDay ?? 0) || (a.tokensPerDay ?? 0) !== (b.tokensPerDay ?? 0))
    return false;
  if ((a.maxConcurrency ?? 0) !== (b.maxConcurrency ?? 0)) return false;
  const x = a.budgets ?? [];
  const y = b.budgets ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    if (x[i]!.scope !== y[i]!.scope || x[i]!.field !== y[i]!.field || x[i]!.limit !== y[i]!.limit) return false;
  }
  return true;
}

interface HoldCommands {
  tollgateHold(
    req: string,
    tok: string,
    bal: string,
    resv: string,
    exp: string,
    held: string,
    bud: string,
    day: string,
    conc: string,
    ...argv: Array<string | number>
  ): Promise<Array<number | string>>;
  tollgateHoldGuarded(...keysThenArgv: Array<string | number>): Promise<Array<number | string>>;
  tollgateRateRelease(req: string, tok: string, day: string, conc: string, decision: string): Promise<number>;
}

/**
 * Whether a failed hold may still have written its holds: anything but a refusal before the script was sent (the
 * connection not verified, or not writable). A command timeout, a connection closed after sending, an error reply
 * (a script can fail after writing) and a cluster's re-sends all may have, or still may, run it.
 */
export function holdMayHaveRun(error: unknown): boolean {
  if (error instanceof RedisUnverifiedError) {
    const cause = error.cause;
    return cause instanceof Error && cause.name === "ReplyError";
  }
  return !(error instanceof Error && /Stream isn't writeable/.test(error.message));
}

/** Options for the Redis quota. */
export interface RedisQuotaOptions {
  redis: RedisConnection;
  /** The limiter's key prefix (`tollgate`); the credit gate's keys follow its own prefix under the same hash tag. */
  prefix: string;
  credits: RedisCreditGate;
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
}

interface Waiting {
  request: HoldRequest;
  resolve(outcome: HoldOutcome): void;
  reject(error: unknown): void;
}

/**
 * Rate limit and credit reservation in one Redis script, atomic across every authz replica: one command where
 * separate ports take two. Checks of one API key that arrive together (in the same turn of the event loop: holds
 * wait for setImmediate, so no timer and at most one loop turn of delay) share one run of the script, up to
 * MAX_BATCH, and send the limits they share once: each Check still gets its answer in one round trip, and ioredis's
 * and Redis's per-command and per-argument costs are paid once per key and turn instead of once per Check. A turn's
 * Checks of one key whose limits differ (a change applied mid-turn) go in separate runs, each with its own limits;
 * separate runs are sent in order but may be decided in either order when the account's balance must first be
 * loaded. Settling and releasing stay with the limiter and the gate, whose keys this script writes.
 */
export function createRedisQuota(options: RedisQuotaOptions): Quota {
  const { redis, prefix, credits } = options;
  const windowMs = options.windowMs ?? RATE_WINDOW_MS;
  const holdKeys = 9;
  redis.defineCommand("tollgateHold", { numberOfKeys: holdKeys, lua: HOLD_LUA });
  // In a cluster the slot's epoch and server keys follow, always last (credit_guard finds them there).
  redis.defineCommand("tollgateHoldGuarded", { numberOfKeys: holdKeys + 2, lua: HOLD_LUA });
  redis.defineCommand("tollgateRateRelease", { numberOfKeys: 4, lua: RELEASE_LUA });
  const commands = redis as unknown as HoldCommands;
  /** Holds waiting for the end of this loop turn, by account and key (one script's keys). */
  let waiting = new Map<string, Waiting[]>();

  function flush(): void {
    const groups = waiting;
    waiting = new Map();
    for (const group of groups.values()) {
      // One run per stretch of requests with the same limits (a change of limits mid-turn starts a new one).
      let start = 0;
      for (let i = 1; i <= group.length; i++) {
        if (i < group.length && i - start < MAX_BATCH && sameLimits(group[start]!.request, group[i]!.request)) continue;
        void run(group.slice(start, i));
        start = i;
      }
    }
  }

  async function run(group: Waiting[]): Promise<void> {
    const { accountId, keyId, now } = group[0]!.request;
    const [req, tok] = rateKeys(prefix, accountId, keyId);
    // A group is one UTC day (hold groups by it), so its requests share the day's key.
    const [day, conc] = quotaKeys(prefix, accountId, keyId, dayOf(now));
    let reply: Array<number | string>;
    try {
      reply = await credits.reserveWith(accountId, now, (k, expiresAt, epoch) => {
        const argv: Array<string | number> = [windowMs, credits.maxOpenPerAccount, epoch, keyId, expiresAt - now];
        argv.push(...limitArgs(group[0]!.request));
        for (const { request: r } of group) argv.push(r.decisionId, r.now, r.tokens, r.amount.toString());
        const keys = [req, tok, k.bal, k.resv, k.exp, k.held, k.bud, day, conc] as const;
        if (k.guard) return commands.tollgateHoldGuarded(...keys, ...k.guard, ...argv);
        return commands.tollgateHold(...keys, ...argv);
      });
    } catch (error) {
      for (const w of group) w.reject(error);
      return;
    }
    for (const [i, { request, resolve }] of group.entries()) {
      const at = i * REPLY_STRIDE;
      const status = reply[at];
      if (status === 2 || status === 3 || status === 4 || status === 5 || status === 6) {
        const credit = creditOutcome(
          status === 2 ? 0 : status,
          String(reply[at + REPLY_STRIDE - 1]),
          credits.maxOpenPerAccount,
          request.budgets,
        );
        if (!credit.reserved) {
          resolve(creditRefused(credit));
          continue;
        }
      }
      const figures = reply.slice(at, at + REPLY_STRIDE - 1) as RateReply;
      const decision = decisionFromReply(figures, request);
      resolve(decision.admitted ? { held: true, rateLimit: decision.state } : { held: false, rate: decision });
    }
  }

  return {
    async release({ keyId, accountId, decisionId, now }) {
      // Both scripts release by decision id, so a release of nothing changes nothing; both run in the account's slot.
      const [req, tok] = rateKeys(prefix, accountId, keyId);
      const [day, conc] = quotaKeys(prefix, accountId, keyId, dayOf(now));
      await Promise.all([
        commands.tollgateRateRelease(req, tok, day, conc, decisionId),
        releaseReservations(credits, accountId, [decisionId]),
      ]);
    },
    hold(request) {
      return new Promise<HoldOutcome>((resolve, reject) => {
        if (waiting.size === 0) setImmediate(flush);
        const group = `${request.accountId}\u0000${request.keyId}\u0000${dayOf(request.now)}`;
        const list = waiting.get(group);
        if (list) list.push({ request, resolve, reject });
        else waiting.set(group, [{ request, resolve, reject }]);
      });
    },
  };
}
