import { creditRefused, type HoldOutcome, type HoldRequest, type Quota } from "../../domain/admission.js";
import { releaseReservations } from "../../domain/credits.js";
import { dayOf, msToNextDay, RATE_WINDOW_MS } from "../../domain/rate-limit.js";
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

/** ARGV entries per decision after the four shared ones (window, maxOpen, epoch, key). */
const PER_DECISION = 15;
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
 * then per decision: decisionId, now, requestsPerMinute, tokensPerMinute, tokens, amount, expiresAt, its budgets
 * (key budget field and limit, account budget field and limit; '' fields for none), requestsPerDay, tokensPerDay,
 * maxConcurrency (0: none) and ms to midnight UTC; a place in flight lasts as long as the credit reservation.
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
local out = {}
for i = 5, #ARGV, ${PER_DECISION} do
  local decision = ARGV[i]
  local now = tonumber(ARGV[i + 1])
  local need = tonumber(ARGV[i + 4])
  local amount = ARGV[i + 5]
  local rpd, tpd, maxc = tonumber(ARGV[i + 11]), tonumber(ARGV[i + 12]), tonumber(ARGV[i + 13])
  local to_midnight = tonumber(ARGV[i + 14])
  local status, available = credit_check(KEYS[3], KEYS[4], KEYS[6], decision, amount, now, max_open, epoch)
  -- Only the first decision can see this (a script's keys do not expire while it runs), before any write.
  if status == -1 then return {-1} end
  local w, reply = rate_check(KEYS[1], KEYS[2], now, window, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), need)
  local d = day_read(KEYS[8], rpd, tpd)
  local figure = '0'
  -- A retry of a decision held before (status 1) already has its place today and in flight.
  local q = nil
  if not reply and status ~= 1 then q = quota_refusal(d, KEYS[9], now, rpd, tpd, maxc, need, to_midnight) end
  if reply then
    reply = with_day(reply, d, 0)
  elseif q then
    reply = with_day({0, q[2], 0, w.count, w.sum, w.newest, q[3]}, d, q[1])
  elseif status == 0 or status == 3 or status == 4 then
    reply = with_day({status == 0 and 2 or status, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
    figure = string.format('%.0f', available)
  elseif status == 1 then
    -- This decision was held before (both parts, atomically): answer as then without holding twice.
    reply = with_day({1, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
  else
    local over = budget_check(KEYS[3], KEYS[7], KEYS[6], key, amount, ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10])
    if over > 0 then
      reply = with_day({over, 0, 0, w.count, w.sum, w.newest, 0}, d, 0)
    else
      -- The key's share is tracked whether or not it has a budget now: a budget set while its requests are in flight
      -- holds them too (as the in-process gate does), and their expiry charges are the key's spend.
      credit_hold(KEYS[4], KEYS[5], KEYS[6], decision, amount, ARGV[i + 6], KEYS[7], key)
      quota_hold(KEYS[8], KEYS[9], d, need, decision, now, to_midnight, maxc, tonumber(ARGV[i + 6]) - now)
      reply = with_day(rate_hold(KEYS[1], KEYS[2], now, window, need, decision, w), d, 0)
    end
  end
  reply[${REPLY_STRIDE}] = figure
  for j = 1, ${REPLY_STRIDE} do out[#out + 1] = reply[j] end
end
return out
`;

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
 * MAX_BATCH: each Check still gets its answer in one round trip, and ioredis's and Redis's per-command cost (about
 * 7 µs and 4 µs, plus per argument) is paid once per key and turn instead of once per Check. bench/check measured
 * about 20 Checks per run under load. Settling and releasing stay with the limiter and the gate, whose keys this
 * script writes.
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
      for (let i = 0; i < group.length; i += MAX_BATCH) void run(group.slice(i, i + MAX_BATCH));
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
        const ttl = expiresAt - now;
        const argv: Array<string | number> = [windowMs, credits.maxOpenPerAccount, epoch, keyId];
        for (const { request: r } of group) {
          argv.push(
            r.decisionId,
            r.now,
            r.requestsPerMinute,
            r.tokensPerMinute,
            r.tokens,
            r.amount.toString(),
            r.now + ttl,
            ...budgetArgs(keyId, r.budgets).slice(1),
            ...quotaArgs(r),
            msToNextDay(r.now),
          );
        }
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
