import type { RateDecision, RateLimiter, RateRequest } from "../../domain/admission.js";
import { dayOf, msToNextDay, RATE_WINDOW_MS, rateDecision } from "../../domain/rate-limit.js";
import type { RedisConnection } from "./client.js";
import type { WindowPeek } from "../../domain/key-status.js";
import { ADMIT_LUA, PEEK_LUA, RELEASE_LUA, SETTLE_LUA, quotaKeys, rateKeys } from "./rate-limit-scripts.js";

/** Options for the Redis limiter. */
export interface RedisRateLimiterOptions {
  redis: RedisConnection;
  /** Key prefix (`tollgate` in production; tests use their own). */
  prefix: string;
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
  /** How long a request holds its place in flight when the meter never sees it end (default 10 minutes). */
  inFlightTtlMs?: number;
}

/**
 * What the rate scripts answer: {admitted 0|1, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt or −1,
 * inFlightTokens (> 0 when requests in flight are what is in the way), refusedBy (0 the minute's window or nothing,
 * 2 requests per day, 3 tokens per day, 4 concurrency; then requestsWaitMs is its wait), requestsToday and
 * tokensToday (−1 without daily quotas)}.
 */
export type RateReply = [number, number, number, number, number, number, number, number?, number?, number?];

const REFUSED_BY = { 2: "requests_day", 3: "tokens_day", 4: "concurrency" } as const;

/** A request's daily quotas and concurrency limit as script arguments (0: none). */
export function quotaArgs(
  r: Pick<RateRequest, "requestsPerDay" | "tokensPerDay" | "maxConcurrency">,
): [requestsPerDay: number, tokensPerDay: number, maxConcurrency: number] {
  return [r.requestsPerDay ?? 0, r.tokensPerDay ?? 0, r.maxConcurrency ?? 0];
}

/** Builds the decision from a rate script's reply. */
export function decisionFromReply(
  reply: readonly [...RateReply, ...unknown[]],
  limits: Pick<RateRequest, "requestsPerMinute" | "tokensPerMinute" | "now" | "requestsPerDay" | "tokensPerDay">,
): RateDecision {
  const [admitted, requestsWaitMs, tokensWaitMs, requests, tokens, newest, inFlightTokens] = reply;
  const refusedBy = (reply[7] ?? 0) as 0 | 2 | 3 | 4;
  const requestsToday = reply[8] ?? -1;
  const figures = {
    requestsPerMinute: limits.requestsPerMinute,
    tokensPerMinute: limits.tokensPerMinute,
    now: limits.now,
    requests,
    tokens,
    newestAt: newest < 0 ? null : newest,
    day:
      requestsToday < 0
        ? undefined
        : {
            requestsPerDay: limits.requestsPerDay ?? 0,
            tokensPerDay: limits.tokensPerDay ?? 0,
            requests: requestsToday,
            tokens: reply[9] ?? 0,
          },
  };
  if (admitted === 1) return rateDecision(figures, null);
  if (refusedBy !== 0) {
    const other = { dimension: REFUSED_BY[refusedBy], waitMs: requestsWaitMs };
    return rateDecision(figures, { requestsWaitMs: 0, tokensWaitMs: 0, inFlightTokens, other });
  }
  return rateDecision(figures, { requestsWaitMs, tokensWaitMs, inFlightTokens });
}

interface LimiterCommands {
  tollgateRateAdmit(...keysThenArgv: Array<string | number>): Promise<RateReply>;
  tollgateRateSettle(...keysThenArgv: Array<string | number>): Promise<number>;
  tollgateRateRelease(...keysThenArgv: Array<string | number>): Promise<number>;
  tollgateRatePeek(...keysThenArgv: Array<string | number>): Promise<number[]>;
}

/**
 * The shared limiter for several replicas: the same sliding-window log as the in-process one, kept in Redis and
 * decided by one Lua script per Check (one round trip, atomic, exact across replicas), with the key's daily quotas and
 * requests in flight in the same script. Throws when Redis cannot answer; the caller's failure policy decides what
 * that means.
 */
export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter & WindowPeek {
  const { redis, prefix } = options;
  const windowMs = options.windowMs ?? RATE_WINDOW_MS;
  const inFlightTtlMs = options.inFlightTtlMs ?? 600_000;
  // defineCommand is idempotent per connection; EVALSHA with a transparent EVAL fallback after a Redis restart.
  redis.defineCommand("tollgateRateAdmit", { numberOfKeys: 4, lua: ADMIT_LUA });
  redis.defineCommand("tollgateRateSettle", { numberOfKeys: 4, lua: SETTLE_LUA });
  redis.defineCommand("tollgateRateRelease", { numberOfKeys: 4, lua: RELEASE_LUA });
  redis.defineCommand("tollgateRatePeek", { numberOfKeys: 4, lua: PEEK_LUA });
  const commands = redis as unknown as LimiterCommands;
  const keys = (accountId: string, keyId: string, now: number) => [
    ...rateKeys(prefix, accountId, keyId),
    ...quotaKeys(prefix, accountId, keyId, dayOf(now)),
  ];

  return {
    async admit(request): Promise<RateDecision> {
      const { keyId, accountId, decisionId, requestsPerMinute, tokensPerMinute, tokens, now } = request;
      const reply = await commands.tollgateRateAdmit(
        ...keys(accountId, keyId, now),
        now,
        windowMs,
        requestsPerMinute,
        tokensPerMinute,
        tokens,
        decisionId,
        ...quotaArgs(request),
        msToNextDay(now),
        inFlightTtlMs,
      );
      return decisionFromReply(reply, request);
    },
    async settle({ keyId, accountId, decisionId, actualTokens, now }) {
      await commands.tollgateRateSettle(...keys(accountId, keyId, now), decisionId, actualTokens);
    },
    async release({ keyId, accountId, decisionId, now }) {
      await commands.tollgateRateRelease(...keys(accountId, keyId, now), decisionId);
    },
    async peek(request) {
      const { keyId, accountId, now } = request;
      const [requests, tokens, newest, requestsToday, tokensToday, inFlight] = await commands.tollgateRatePeek(
        ...keys(accountId, keyId, now),
        now,
        windowMs,
        ...quotaArgs(request),
      );
      const reply: RateReply = [1, 0, 0, requests!, tokens!, newest!, 0, 0, requestsToday, tokensToday];
      return { state: decisionFromReply(reply, request).state!, inFlight: inFlight! };
    },
  };
}
