import type { Redis } from "ioredis";
import type { RateDecision, RateLimiter } from "../../domain/admission.js";
import { RATE_WINDOW_MS, rateDecision } from "../../domain/rate-limit.js";
import { keyScope } from "./client.js";
import { ADMIT_LUA, RELEASE_LUA, SETTLE_LUA } from "./rate-limit-scripts.js";

/** Options for the Redis limiter. */
export interface RedisRateLimiterOptions {
  redis: Redis;
  /** Key prefix (`tollgate` in production; tests use their own). */
  prefix: string;
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
}

type Reply = [number, number, number, number, number, number];

interface LimiterCommands {
  tollgateRateAdmit(req: string, tok: string, ...argv: Array<string | number>): Promise<Reply>;
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
  const keys = (keyId: string): [string, string] => {
    const scope = keyScope(prefix, keyId);
    return [`${scope}:rl:req`, `${scope}:rl:tok`];
  };

  return {
    async admit({ keyId, decisionId, requestsPerMinute, tokensPerMinute, tokens, now }): Promise<RateDecision> {
      const [admitted, requestsWaitMs, tokensWaitMs, requests, used, newest] = await commands.tollgateRateAdmit(
        ...keys(keyId), now, windowMs, requestsPerMinute, tokensPerMinute, tokens, decisionId,
      );
      const figures = { requestsPerMinute, tokensPerMinute, requests, tokens: used, newestAt: newest < 0 ? null : newest, now };
      return rateDecision(figures, admitted === 1 ? null : { requestsWaitMs, tokensWaitMs });
    },
    async settle({ keyId, decisionId, actualTokens }) {
      await commands.tollgateRateSettle(...keys(keyId), decisionId, actualTokens);
    },
    async release({ keyId, decisionId }) {
      await commands.tollgateRateRelease(...keys(keyId), decisionId);
    },
  };
}
