import type { Redis } from "ioredis";
import type { Quota } from "../../domain/admission.js";
import { nanos } from "../../domain/money.js";
import { RATE_WINDOW_MS } from "../../domain/rate-limit.js";
import { CREDIT_LUA_FUNCTIONS, type RedisCreditGate } from "./credit-gate.js";
import { decisionFromReply } from "./rate-limiter.js";
import { RATE_LUA_FUNCTIONS, rateKeys } from "./rate-limit-scripts.js";

/**
 * One script decides a request's rate limit and credit reservation, and holds both or neither: the limiter's window
 * first (a 429 outranks a 402, as with separate ports), then the account's balance minus its open reservations.
 * KEYS: req, tok (the key's window), bal, resv, exp, held (its account's credit), all under the account's hash tag.
 * ARGV: decisionId, now, windowMs, requestsPerMinute, tokensPerMinute, tokens, amount, expiresAt.
 * Returns {status, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt, available}: status 1 held, 0 refused by
 * the limiter, 2 refused for credit (available = what is left), −1 the balance is not loaded (nothing written).
 */
const HOLD_LUA = `${RATE_LUA_FUNCTIONS}${CREDIT_LUA_FUNCTIONS}
local decision = ARGV[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local need = tonumber(ARGV[6])
-- Credit is read first (reads only) so a balance not yet loaded returns before anything is written.
local status, available = credit_check(KEYS[3], KEYS[4], KEYS[6], decision, ARGV[7])
if status == -1 then return {-1, 0, 0, 0, 0, -1, '0'} end
local w, refusal = rate_check(KEYS[1], KEYS[2], now, window, tonumber(ARGV[4]), tonumber(ARGV[5]), need)
if refusal then
  refusal[7] = '0'
  return refusal
end
if status == 0 then return {2, 0, 0, w.count, w.sum, w.newest, string.format('%.0f', available)} end
-- status 1: this decision was held before (both parts, atomically); answer as then without holding twice.
if status == 1 then return {1, 0, 0, w.count, w.sum, w.newest, '0'} end
credit_hold(KEYS[4], KEYS[5], KEYS[6], decision, ARGV[7], ARGV[8])
local held = rate_hold(KEYS[1], KEYS[2], now, window, need, decision, w)
held[7] = '0'
return held
`;

type HoldReply = [number, number, number, number, number, number, string];

interface HoldCommands {
  tollgateHold(req: string, tok: string, bal: string, resv: string, exp: string, held: string, ...argv: Array<string | number>): Promise<HoldReply>;
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

/**
 * Rate limit and credit reservation in one Redis script per Check: one command and one round trip where separate
 * ports take two, atomic across every authz replica. Settling and releasing stay with the limiter and the gate,
 * whose keys this script writes.
 */
export function createRedisQuota(options: RedisQuotaOptions): Quota {
  const { redis, prefix, credits } = options;
  const windowMs = options.windowMs ?? RATE_WINDOW_MS;
  redis.defineCommand("tollgateHold", { numberOfKeys: 6, lua: HOLD_LUA });
  const commands = redis as unknown as HoldCommands;
  return {
    async hold({ keyId, accountId, decisionId, requestsPerMinute, tokensPerMinute, tokens, amount, now }) {
      const [req, tok] = rateKeys(prefix, accountId, keyId);
      const reply = await credits.reserveWith(accountId, now, (k, expiresAt) =>
        commands.tollgateHold(req, tok, k.bal, k.resv, k.exp, k.held, decisionId, now, windowMs, requestsPerMinute, tokensPerMinute, tokens, amount.toString(), expiresAt),
      );
      const status = reply[0];
      if (status === 2) return { held: false, available: nanos(BigInt(reply[6])) };
      const decision = decisionFromReply(reply, { requestsPerMinute, tokensPerMinute, now });
      return decision.admitted ? { held: true, rateLimit: decision.state } : { held: false, rate: decision };
    },
  };
}
