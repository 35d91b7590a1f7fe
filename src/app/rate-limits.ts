import type { Redis } from "ioredis";
import { createMemoryRateLimiter } from "../adapters/memory/rate-limiter.js";
import { connectRedis, createRedisClient } from "../adapters/redis/client.js";
import { createRedisRateLimiter } from "../adapters/redis/rate-limiter.js";
import type { Config } from "../config/config.js";
import type { HoldOutcome, Quota, RateLimiter } from "../domain/admission.js";
import type { Logger } from "../logging.js";

/** The limiter a control plane runs with, and the Redis connection behind it when there is one. */
export interface RateLimiting {
  backend: "memory" | "redis";
  limiter: RateLimiter;
  /** The hot-path Redis connection (fail-fast), shared with other Redis-backed ports; absent in-process. */
  redis?: Redis;
  close(): Promise<void>;
}

/** Calls `log` at most once per `everyMs`, saying how many calls it swallowed, so an outage is one line per period. */
export function throttled(everyMs: number, log: (suppressed: number, detail: unknown) => void): (detail: unknown) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (detail) => {
    const now = Date.now();
    if (now - last < everyMs) {
      suppressed++;
      return;
    }
    last = now;
    log(suppressed, detail);
    suppressed = 0;
  };
}

/**
 * Applies the failure policy to admission's quota (rate limits and credit reservations). Fail closed (default): a
 * fault propagates and admission answers 503 `unavailable` with Retry-After. Fail open (`redis.fail_open`): the
 * request is admitted without rate limits and without a credit reservation; the meter still bills its actual usage,
 * so balances can go below zero while Redis is away. Either way a warning is logged, at most once per 10 s.
 */
export function withFailurePolicy(inner: Quota, options: { failOpen: boolean; logger: Logger }): Quota {
  const { logger, failOpen } = options;
  const warn = throttled(10_000, (suppressed, err) =>
    logger.warn({ err, suppressed }, failOpen
      ? "rate limits and credit reservations unreachable; admitting WITHOUT them (redis.fail_open)"
      : "rate limits and credit reservations unreachable; answering 503 (fail closed)"),
  );
  return {
    async hold(request): Promise<HoldOutcome> {
      try {
        return await inner.hold(request);
      } catch (error) {
        warn(error);
        if (failOpen) return { held: true };
        throw error;
      }
    },
  };
}

/**
 * Chooses the limiter from config: in-process for one replica (the embedded default), Redis when `redis.url` is set
 * so every replica shares one exact window per key. A Redis that is down at start-up does not stop the start: the
 * connection keeps retrying and decisions follow the failure policy until it is back.
 */
export async function startRateLimiting(config: Config, logger: Logger): Promise<RateLimiting> {
  if (!config.redis.url) {
    return { backend: "memory", limiter: createMemoryRateLimiter(), close: async () => undefined };
  }
  const connectionWarning = throttled(10_000, (suppressed, err) => logger.warn({ err, suppressed }, "redis connection error"));
  const redis = createRedisClient(config.redis.url, { onError: connectionWarning, commandTimeoutMs: config.redis.command_timeout_ms });
  if (!(await connectRedis(redis))) logger.warn("redis not reachable at start-up; retrying in the background");
  const limiter = createRedisRateLimiter({ redis, prefix: config.redis.prefix });
  return {
    backend: "redis",
    limiter,
    redis,
    async close() {
      redis.disconnect();
    },
  };
}
