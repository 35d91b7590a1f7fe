import type { RateDecision } from "./admission.js";
import type { RateLimitState } from "./verdict.js";

/**
 * The limits window. Limits are exact over any sliding 60-second window: a sliding-window log (every admission with
 * its time and tokens) admits iff the admissions in (now − 60 s, now] plus this one fit. A token bucket or GCRA only
 * bounds the average, and lets up to twice the limit through across a window boundary.
 */
export const RATE_WINDOW_MS = 60_000;

/** Whole seconds, rounded up, so a client that waits them is never early. */
export function ceilSeconds(ms: number): number {
  return ms <= 0 ? 0 : Math.ceil(ms / 1000);
}

/** What a limiter knows after deciding, from which both backends build the same RateDecision. */
export interface WindowFigures {
  requestsPerMinute: number;
  tokensPerMinute: number;
  /** Requests and tokens in the window after the decision (including this one when admitted). */
  requests: number;
  tokens: number;
  /** Time of the newest admission still in the window, or null when it is empty. */
  newestAt: number | null;
  now: number;
}

/**
 * OpenAI's x-ratelimit-* figures: remaining after this request, and reset = seconds until the window is empty again
 * (the newest admission ages out), which is when "remaining" is back to the full limit.
 */
export function windowState(f: WindowFigures): RateLimitState {
  const reset = f.newestAt === null ? 0 : ceilSeconds(f.newestAt + RATE_WINDOW_MS - f.now);
  return {
    requests: { limit: f.requestsPerMinute, remaining: Math.max(0, f.requestsPerMinute - f.requests), resetSeconds: f.requests > 0 ? reset : 0 },
    tokens: { limit: f.tokensPerMinute, remaining: Math.max(0, f.tokensPerMinute - f.tokens), resetSeconds: f.tokens > 0 ? reset : 0 },
  };
}

/**
 * Builds the decision from the window figures and, on refusal, how long until enough old admissions age out for each
 * dimension. Retry-After is the larger wait, so a client that waits it fits in both (unless others got there first).
 */
export function rateDecision(
  f: WindowFigures,
  refusal: { requestsWaitMs: number; tokensWaitMs: number } | null,
): RateDecision {
  const state = windowState(f);
  if (!refusal) return { admitted: true, state };
  const byRequests = refusal.requestsWaitMs >= refusal.tokensWaitMs;
  return {
    admitted: false,
    state,
    retryAfterSeconds: Math.max(1, ceilSeconds(Math.max(refusal.requestsWaitMs, refusal.tokensWaitMs))),
    dimension: byRequests ? "requests" : "tokens",
  };
}
