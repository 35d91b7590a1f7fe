import type { Redis } from "ioredis";
import type { RateDecision, RateLimiter } from "../../domain/admission.js";
import { RATE_WINDOW_MS, rateDecision } from "../../domain/rate-limit.js";
import { ADMIT_LUA, RELEASE_LUA, SETTLE_LUA, rateKeys } from "./rate-limit-scripts.js";

/** Options for the Redis limiter. */
export interface RedisRateLimiterOptions {
  redis: Redis;
  /** Key prefix (`tollgate` in production; tests use their own). */
  prefix: string;
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
}

/** What the rate scripts answer: {admitted 0|1, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt or −1}. */
export type RateReply = [number, number, number, number, number, number];

/** Builds the decision from a rate script's reply. */
export function decisionFromReply(reply: readonly [...RateReply, ...unknown[]], limits: { requestsPerMinute: number; tokensPerMinute: number; now: number }): RateDecision {
  const [admitted, requestsWaitMs, tokensWaitMs, requests, tokens, newest] = reply;
  const figures = { requestsPerMinute: limits.requestsPerMinute, tokensPerMinute: limits.tokensPerMinute, now: limits.now, requests, tokens, newestAt: newest < 0 ? null : newest };
  return rateDecision(figures, admitted === 1 ? null : { requestsWaitMs, tokensWaitMs });
}

interface LimiterCommands {
  tollgateRateAdmit(req: string, tok: string, ...argv: Array<string | number>): Promise<RateReply>;
  tollgateRateSettle(req: string, tok: string, decisionId: string, actual: number): Promise<number>;
  tollgateRateRelease(req: string, tok: string, decisionId: string): Promise<number>;
}

/**
 * The shared limiter for several replicas: the same sliding-window log as the in-process one, kept in Redis and
 * decided by one Lua script per Check (one round trip, atomic, exact across replicas). Throws when Redis cannot
 * answer; the caller's failure policy decides what that means.
 */
export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter {
  const { redis, prefix } = options;
  const windowMs = options.windowMs ?? RATE_WINDOW_MS;
  // defineCommand is idempotent per connection; EVALSHA with a transparent EVAL fallback after a Redis restart.
  redis.defineCommand("tollgateRateAdmit", { numberOfKeys: 2, lua: ADMIT_LUA });
  redis.defineCommand("tollgateRateSettle", { numberOfKeys: 2, lua: SETTLE_LUA });
  redis.defineCommand("tollgateRateRelease", { numberOfKeys: 2, lua: RELEASE_LUA });
  const commands = redis as unknown as LimiterCommands;

  return {
    async admit({ keyId, accountId, decisionId, requestsPerMinute, tokensPerMinute, tokens, now }): Promise<RateDecision> {
      const reply = await commands.tollgateRateAdmit(...rateKeys(prefix, accountId, keyId), now, windowMs, requestsPerMinute, tokensPerMinute, tokens, decisionId);
      return decisionFromReply(reply, { requestsPerMinute, tokensPerMinute, now });
    },
    async settle({ keyId, accountId, decisionId, actualTokens }) {
      await commands.tollgateRateSettle(...rateKeys(prefix, accountId, keyId), decisionId, actualTokens);
    },
    async release({ keyId, accountId, decisionId }) {
      await commands.tollgateRateRelease(...rateKeys(prefix, accountId, keyId), decisionId);
    },
  };
}
