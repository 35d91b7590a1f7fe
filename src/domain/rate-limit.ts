import type { RateDecision } from "./admission.js";
import type { RateLimitState } from "./verdict.js";

/**
 * The limits window. Limits are exact over any sliding 60-second window: a sliding-window log (every admission with
 * its time and tokens) admits iff the admissions in (now − 60 s, now] plus this one fit. A token bucket or GCRA only
 * bounds the average, and lets up to twice the limit through across a window boundary.
 */
export const RATE_WINDOW_MS = 60_000;

/**
 * What a refusal asks a client to wait when the tokens in its way belong to requests still in flight: they count what
 * they may use until the meter settles them to what they used, which is usually far less, so a short wait is the
 * honest answer, not the time until they age out of the window.
 */
export const IN_FLIGHT_WAIT_MS = 1_000;

/** What a concurrency refusal asks a client to wait: requests end in seconds, and each frees a place at once. */
export const CONCURRENCY_WAIT_MS = 1_000;

/** Output tokens a request without `max_tokens` is expected to use when neither its model nor its plan says. */
export const DEFAULT_EXPECTED_OUTPUT_TOKENS = 1_024;

/**
 * Output tokens the tokens-per-minute window counts for a request until the meter settles it: the client's
 * `max_tokens` when set; otherwise the model's expected output, else the plan's, else a default; never above the
 * model's output cap. (Credit reservations still hold the cap: money is never overrun.)
 */
export function expectedOutputTokens(
  maxTokens: number | undefined,
  model: { maxOutputTokens: number; expectedOutputTokens?: number | null },
  plan: { expectedOutputTokens?: number | null },
): number {
  if (maxTokens !== undefined) return maxTokens;
  const expected = model.expectedOutputTokens ?? plan.expectedOutputTokens ?? DEFAULT_EXPECTED_OUTPUT_TOKENS;
  return Math.min(expected, model.maxOutputTokens);
}

/** Daily quotas count UTC days. */
export const DAY_MS = 86_400_000;

/** The UTC day `now` falls in, as days since the epoch (the daily quotas' period). */
export function dayOf(now: number): number {
  return Math.floor(now / DAY_MS);
}

/** Milliseconds from `now` to the next UTC midnight, when daily quotas start again. */
export function msToNextDay(now: number): number {
  return (dayOf(now) + 1) * DAY_MS - now;
}

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
  /** Today's figures when the key has daily quotas (after the decision, as for the window). */
  day?: DayFigures;
}

/** A key's day so far: its quotas (0: none) and the requests and tokens counted against them. */
export interface DayFigures {
  requestsPerDay: number;
  tokensPerDay: number;
  requests: number;
  tokens: number;
}

/**
 * OpenAI's x-ratelimit-* figures: remaining after this request, and reset = seconds until the window is empty again
 * (the newest admission ages out), which is when "remaining" is back to the full limit.
 */
export function windowState(f: WindowFigures): RateLimitState {
  const reset = f.newestAt === null ? 0 : ceilSeconds(f.newestAt + RATE_WINDOW_MS - f.now);
  const state = minuteState(f, reset);
  if (f.day) {
    const resetDay = ceilSeconds(msToNextDay(f.now));
    const { requestsPerDay, tokensPerDay, requests, tokens } = f.day;
    if (requestsPerDay > 0) {
      state.requestsDay = {
        limit: requestsPerDay,
        remaining: Math.max(0, requestsPerDay - requests),
        resetSeconds: requests > 0 ? resetDay : 0,
      };
    }
    if (tokensPerDay > 0) {
      state.tokensDay = {
        limit: tokensPerDay,
        remaining: Math.max(0, tokensPerDay - tokens),
        resetSeconds: tokens > 0 ? resetDay : 0,
      };
    }
  }
  return state;
}

function minuteState(f: WindowFigures, reset: number): RateLimitState {
  return {
    requests: {
      limit: f.requestsPerMinute,
      remaining: Math.max(0, f.requestsPerMinute - f.requests),
      resetSeconds: f.requests > 0 ? reset : 0,
    },
    tokens: {
      limit: f.tokensPerMinute,
      remaining: Math.max(0, f.tokensPerMinute - f.tokens),
      resetSeconds: f.tokens > 0 ? reset : 0,
    },
  };
}

/** How long a limiter's refusal asks to wait for each dimension, and whose tokens are in the way. */
export interface RefusalFigures {
  requestsWaitMs: number;
  tokensWaitMs: number;
  /** Set (> 0) when the tokens in the way are held by requests in flight: how many tokens they hold. */
  inFlightTokens?: number;
  /** A daily quota or the concurrency limit refused (the minute's window had room); waitMs is its wait. */
  other?: { dimension: "requests_day" | "tokens_day" | "concurrency"; waitMs: number };
}

/**
 * Builds the decision from the window figures and, on refusal, how long until enough old admissions age out for each
 * dimension. Retry-After is the larger wait, so a client that waits it fits in both (unless others got there first).
 */
export function rateDecision(f: WindowFigures, refusal: RefusalFigures | null): RateDecision {
  const state = windowState(f);
  if (!refusal) return { admitted: true, state };
  if (refusal.other) {
    const decision: RateDecision = {
      admitted: false,
      state,
      retryAfterSeconds: Math.max(1, ceilSeconds(refusal.other.waitMs)),
      dimension: refusal.other.dimension,
    };
    if (refusal.inFlightTokens) decision.inFlightTokens = refusal.inFlightTokens;
    return decision;
  }
  const byRequests = refusal.requestsWaitMs > 0 && refusal.requestsWaitMs >= refusal.tokensWaitMs;
  const decision: RateDecision = {
    admitted: false,
    state,
    retryAfterSeconds: Math.max(1, ceilSeconds(Math.max(refusal.requestsWaitMs, refusal.tokensWaitMs))),
    dimension: byRequests ? "requests" : "tokens",
  };
  if (!byRequests && refusal.inFlightTokens) decision.inFlightTokens = refusal.inFlightTokens;
  return decision;
}

/** A daily quota's or the concurrency limit's refusal, and the tokens in flight when they are what is in the way. */
export type QuotaRefusal = NonNullable<RefusalFigures["other"]> & { inFlightTokens?: number };

/**
 * Whether today's quotas admit one more request of `need` tokens, and if not, which refuses and the wait: until
 * midnight UTC, or a short IN_FLIGHT_WAIT_MS when the day's tokens in the way belong to requests in flight.
 * `inFlight` is the part of `day.tokens` not settled yet.
 */
export function dayRefusal(day: DayFigures, inFlight: number, need: number, now: number): QuotaRefusal | null {
  if (day.requestsPerDay > 0 && day.requests + 1 > day.requestsPerDay) {
    return { dimension: "requests_day", waitMs: msToNextDay(now) };
  }
  if (day.tokensPerDay > 0 && day.tokens + need > day.tokensPerDay) {
    if (need <= day.tokensPerDay && day.tokens - inFlight + need <= day.tokensPerDay) {
      return { dimension: "tokens_day", waitMs: IN_FLIGHT_WAIT_MS, inFlightTokens: inFlight };
    }
    return { dimension: "tokens_day", waitMs: msToNextDay(now) };
  }
  return null;
}

/**
 * The tokens dimension's wait, the same rule in both limiters. The window holds `sum` tokens, of which `inFlight`
 * belong to requests not settled yet. If the settled tokens alone leave room for `need`, the requests in flight are
 * what is in the way: wait IN_FLIGHT_WAIT_MS. Otherwise wait until enough settled tokens age out (`settledAgeOut`
 * answers when `excess` settled tokens have aged out, oldest first).
 */
export function tokensWait(
  figures: { sum: number; inFlight: number; need: number; tokensPerMinute: number },
  settledAgeOut: (excess: number) => number,
): { waitMs: number; inFlightTokens?: number } {
  const settled = figures.sum - figures.inFlight;
  const excess = settled + figures.need - figures.tokensPerMinute;
  if (excess <= 0) return { waitMs: IN_FLIGHT_WAIT_MS, inFlightTokens: figures.inFlight };
  return { waitMs: settledAgeOut(excess) };
}
