import type { Redis } from "ioredis";
import type { HoldOutcome, HoldRequest, Quota } from "../../domain/admission.js";
import { nanos } from "../../domain/money.js";
import { RATE_WINDOW_MS } from "../../domain/rate-limit.js";
import { CREDIT_LUA_FUNCTIONS, type RedisCreditGate } from "./credit-gate.js";
import { decisionFromReply } from "./rate-limiter.js";
import { RATE_LUA_FUNCTIONS, rateKeys } from "./rate-limit-scripts.js";

/** ARGV entries per decision after ARGV[1] (the window). */
const PER_DECISION = 7;
/** Decisions per script run at most, so one run holds Redis for well under a millisecond. */
const MAX_BATCH = 32;

/**
 * Decides requests of one API key, each by the same steps, in order, inside one atomic script: exactly what that
 * many one-decision runs would decide, back to back. Per decision it holds the rate limit and the credit reservation
 * together or neither: the limiter's window first (a 429 outranks a 402, as with separate ports), then the account's
 * balance minus its open reservations.
 * KEYS: req, tok (the key's window), bal, resv, exp, held (its account's credit), all under the account's hash tag.
 * ARGV: windowMs, then per decision: decisionId, now, requestsPerMinute, tokensPerMinute, tokens, amount, expiresAt.
 * Returns per decision {status, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt, available}, flat: status 1
 * held, 0 refused by the limiter, 2 refused for credit (available = what is left); or {-1} alone when the balance is
 * not loaded (read before anything is written, so nothing was).
 */
const HOLD_LUA = `${RATE_LUA_FUNCTIONS}${CREDIT_LUA_FUNCTIONS}
local window = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, ${PER_DECISION} do
  local decision = ARGV[i]
  local now = tonumber(ARGV[i + 1])
  local need = tonumber(ARGV[i + 4])
  local amount = ARGV[i + 5]
  local status, available = credit_check(KEYS[3], KEYS[4], KEYS[6], decision, amount)
  -- Only the first decision can see this (a script's keys do not expire while it runs), before any write.
  if status == -1 then return {-1} end
  local w, reply = rate_check(KEYS[1], KEYS[2], now, window, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), need)
  if reply then
    reply[7] = '0'
  elseif status == 0 then
    reply = {2, 0, 0, w.count, w.sum, w.newest, string.format('%.0f', available)}
  elseif status == 1 then
    -- This decision was held before (both parts, atomically): answer as then without holding twice.
    reply = {1, 0, 0, w.count, w.sum, w.newest, '0'}
  else
    credit_hold(KEYS[4], KEYS[5], KEYS[6], decision, amount, ARGV[i + 6])
    reply = rate_hold(KEYS[1], KEYS[2], now, window, need, decision, w)
    reply[7] = '0'
  end
  for j = 1, 7 do out[#out + 1] = reply[j] end
end
return out
`;

interface HoldCommands {
  tollgateHold(req: string, tok: string, bal: string, resv: string, exp: string, held: string, ...argv: Array<string | number>): Promise<Array<number | string>>;
}

/** Options for the Redis quota. */
export interface RedisQuotaOptions {
  redis: Redis;
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
  redis.defineCommand("tollgateHold", { numberOfKeys: 6, lua: HOLD_LUA });
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
    let reply: Array<number | string>;
    try {
      reply = await credits.reserveWith(accountId, now, (k, expiresAt) => {
        const ttl = expiresAt - now;
        const argv: Array<string | number> = [windowMs];
        for (const { request: r } of group) {
          argv.push(r.decisionId, r.now, r.requestsPerMinute, r.tokensPerMinute, r.tokens, r.amount.toString(), r.now + ttl);
        }
        return commands.tollgateHold(req, tok, k.bal, k.resv, k.exp, k.held, ...argv);
      });
    } catch (error) {
      for (const w of group) w.reject(error);
      return;
    }
    group.forEach(({ request, resolve }, i) => {
      const at = i * PER_DECISION;
      if (reply[at] === 2) return resolve({ held: false, available: nanos(BigInt(reply[at + 6]!)) });
      const figures = reply.slice(at, at + PER_DECISION) as [number, number, number, number, number, number];
      const decision = decisionFromReply(figures, request);
      resolve(decision.admitted ? { held: true, rateLimit: decision.state } : { held: false, rate: decision });
    });
  }

  return {
    hold(request) {
      return new Promise<HoldOutcome>((resolve, reject) => {
        if (waiting.size === 0) setImmediate(flush);
        const group = `${request.accountId}\u0000${request.keyId}`;
        const list = waiting.get(group);
        if (list) list.push({ request, resolve, reject });
        else waiting.set(group, [{ request, resolve, reject }]);
      });
    },
  };
}
