import { createMemoryRateLimiter } from "../adapters/memory/rate-limiter.js";
import { connectRedis, createRedisClient, type RedisConnection } from "../adapters/redis/client.js";
import { RedisUnverifiedError } from "../adapters/redis/credit-gate.js";
import { holdMayHaveRun } from "../adapters/redis/quota.js";
import { createRedisRateLimiter } from "../adapters/redis/rate-limiter.js";
import type { Config } from "../config/config.js";
import type { HoldOutcome, HoldRequest, Quota, RateLimiter } from "../domain/admission.js";
import type { WindowPeek } from "../domain/key-status.js";
import type { Logger } from "../logging.js";
import { createHoldReleaser, type HoldReleaserOptions } from "./hold-releases.js";
import { throttled } from "./throttled.js";

/** The limiter a control plane runs with, and the Redis connection behind it when there is one. */
export interface RateLimiting {
  backend: "memory" | "redis";
  /** The limiter, which also reads a key's windows without admitting (GET /v1/key). */
  limiter: RateLimiter & WindowPeek;
  /** The hot-path Redis connection (fail-fast), shared with other Redis-backed ports; absent in-process. */
  redis?: RedisConnection;
  close(): Promise<void>;
}

export { throttled } from "./throttled.js";

/**
 * Applies the failure policy to admission's quota (rate limits and credit reservations). Fail closed (default): a
 * fault propagates and admission answers 503 `unavailable` with Retry-After. Fail open (`redis.fail_open`): the
 * request is admitted without rate limits and without a credit reservation; the meter still bills its actual usage,
 * so balances can go below zero while Redis is away. Never while Redis is connected but its dataset is not verified
 * (after a restart or failover): that stays 503. Either way a warning is logged, at most once per 10 s.
 * A hold that failed may still have been written (a command timeout: Redis runs the script after the client gave
 * up; a connection closed after sending; a cluster's re-send). Answered 503, no access-log entry will ever settle it,
 * so whatever it may have held is released in the background (idempotent, retried, repeated once a little later).
 * Admitted open, it is kept: the request went upstream and a late hold is then its reservation. `release` does the
 * same for an admission the data plane never forwarded.
 */
export function withFailurePolicy(
  inner: Quota,
  options: {
    failOpen: boolean;
    logger: Logger;
    onRefused?(reason: "account_full" | "total_full" | "fenced"): void;
    /** How releases are retried (tests shorten the confirmation delay). */
    releases?: Omit<HoldReleaserOptions, "release" | "logger">;
  },
): Quota & { close(): void } {
  const { logger, failOpen, onRefused } = options;
  const warn = throttled(10_000, (suppressed, err) =>
    logger.warn(
      { err, suppressed },
      failOpen
        ? "rate limits and credit reservations unreachable; admitting WITHOUT them (redis.fail_open)"
        : "rate limits and credit reservations unreachable; answering 503 (fail closed)",
    ),
  );
  const release = inner.release?.bind(inner);
  const releaser = release ? createHoldReleaser({ ...options.releases, release, logger }) : undefined;
  function observed(outcome: HoldOutcome): HoldOutcome {
    if (onRefused && !outcome.held) {
      if ("inFlight" in outcome) onRefused(outcome.inFlight === "account" ? "account_full" : "total_full");
      else if ("fenced" in outcome) onRefused("fenced");
    }
    return outcome;
  }
  function failed(request: HoldRequest, error: unknown): HoldOutcome {
    warn(error);
    // Admitted open, the request goes upstream: a hold that ran late is its reservation (the meter settles it, and
    // an expiry never charges a decision already billed); released, a lost access-log entry would make it free.
    if (failOpen && failsOpen(error)) return { held: true };
    const { keyId, accountId, decisionId, now } = request;
    if (holdMayHaveRun(error)) releaser?.schedule({ keyId, accountId, decisionId, now }, true);
    throw error;
  }
  return {
    hold(request) {
      // Synchronous when the quota is (in process, warm): no promise and no microtask per Check. As before, a fault
      // anywhere in here (the hold, or counting its refusal) goes through `failed`.
      try {
        const outcome = inner.hold(request);
        return outcome instanceof Promise
          ? outcome.then(observed).catch((error: unknown) => failed(request, error))
          : observed(outcome);
      } catch (error) {
        return failed(request, error);
      }
    },
    release(held) {
      releaser?.schedule(held, false);
    },
    close() {
      releaser?.close();
    },
  };
}

/**
 * Whether a quota fault may fail open: only Redis being away (unreachable, timed out). A connected Redis whose dataset
 * is not verified (after a restart or failover, while the attach script is slow or refused) stays a 503: that is when
 * reservations may have been lost, and admitting unreserved would spend the credit they still hold.
 */
function failsOpen(error: unknown): boolean {
  return !(error instanceof RedisUnverifiedError && error.connected);
}

/**
 * Chooses the limiter from config: in-process for one replica (the embedded default), Redis when `redis.url` is set
 * so every replica shares one exact window per key. A Redis that is down at start-up does not stop the start: the
 * connection keeps retrying and decisions follow the failure policy until it is back.
 */
export async function startRateLimiting(config: Config, logger: Logger): Promise<RateLimiting> {
  if (!config.redis.url) {
    // A request whose end the meter never sees holds its place in flight as long as its credit reservation.
    const limiter = createMemoryRateLimiter({ inFlightTtlMs: config.meter.reservation_ttl_ms });
    return { backend: "memory", limiter, close: async () => undefined };
  }
  const connectionWarning = throttled(10_000, (suppressed, err) =>
    logger.warn({ err, suppressed }, "redis connection error"),
  );
  const redis = createRedisClient(config.redis.url, {
    onError: connectionWarning,
    commandTimeoutMs: config.redis.command_timeout_ms,
  });
  if (!(await connectRedis(redis))) logger.warn("redis not reachable at start-up; retrying in the background");
  const limiter = createRedisRateLimiter({
    redis,
    prefix: config.redis.prefix,
    inFlightTtlMs: config.meter.reservation_ttl_ms,
  });
  return {
    backend: "redis",
    limiter,
    redis,
    async close() {
      redis.disconnect();
    },
  };
}
