import type { RateDecision, RateLimiter } from "../../domain/admission.js";
import { RATE_WINDOW_MS, rateDecision, tokensWait } from "../../domain/rate-limit.js";
import type { WindowPeek } from "../../domain/key-status.js";
import { MemoryKeyQuotas, type KeyQuotaLimits } from "./key-quotas.js";

interface Entry {
  at: number;
  decisionId: string;
  tokens: number;
  /** The meter has replaced the admission's expected tokens with those used. */
  settled: boolean;
}

/** One key's log: admissions in time order from `head`, with running totals (all tokens, and those in flight). */
interface KeyLog {
  entries: Entry[];
  head: number;
  tokens: number;
  inFlight: number;
  byDecision: Map<string, Entry>;
}

/** Options for the in-process limiter. */
export interface MemoryRateLimiterOptions {
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
  /** How long a request holds its place in flight when the meter never sees it end (default 10 minutes). */
  inFlightTtlMs?: number;
}

/** What a request's daily quotas and concurrency limit are (0: none). */
function quotaLimits(r: { requestsPerDay?: number; tokensPerDay?: number; maxConcurrency?: number }): KeyQuotaLimits {
  return {
    requestsPerDay: r.requestsPerDay ?? 0,
    tokensPerDay: r.tokensPerDay ?? 0,
    maxConcurrency: r.maxConcurrency ?? 0,
  };
}

/** The in-process limiter, plus how many keys it holds (to show memory stays bounded). */
export interface MemoryRateLimiter extends RateLimiter, WindowPeek {
  keyCount(): number;
}

/**
 * The embedded (single-replica) limiter: a sliding-window log per key, exact over any 60-second window. Memory is
 * bounded by what the limits allow: a key holds at most requests-per-minute entries, each pruned when it ages out, and
 * keys idle for a whole window are dropped (the map is kept in last-use order so that costs O(1) per call).
 */
export function createMemoryRateLimiter(options: MemoryRateLimiterOptions = {}): MemoryRateLimiter {
  const windowMs = options.windowMs ?? RATE_WINDOW_MS;
  const logs = new Map<string, KeyLog>();
  const lastUse = new Map<string, number>();
  const quotas = new MemoryKeyQuotas(options.inFlightTtlMs ?? 600_000);

  function prune(log: KeyLog, now: number): void {
    const cutoff = now - windowMs;
    while (log.head < log.entries.length && log.entries[log.head]!.at <= cutoff) {
      const old = log.entries[log.head++]!;
      log.tokens -= old.tokens;
      if (!old.settled) log.inFlight -= old.tokens;
      log.byDecision.delete(old.decisionId);
    }
    // Compact once the dead prefix dominates, so the array never grows past ~2× the live entries.
    if (log.head > 32 && log.head * 2 > log.entries.length) {
      log.entries = log.entries.slice(log.head);
      log.head = 0;
    }
  }

  function sweepIdle(now: number): void {
    for (const [keyId, at] of lastUse) {
      if (at > now - windowMs) break;
      lastUse.delete(keyId);
      logs.delete(keyId);
    }
  }

  function logFor(keyId: string, now: number): KeyLog {
    sweepIdle(now);
    let log = logs.get(keyId);
    if (!log) logs.set(keyId, (log = { entries: [], head: 0, tokens: 0, inFlight: 0, byDecision: new Map() }));
    lastUse.delete(keyId);
    lastUse.set(keyId, now);
    prune(log, now);
    return log;
  }

  /** Time until the oldest entries that must age out have done so, for `excess` > 0 of `weight`. */
  function waitFor(log: KeyLog, excess: number, weight: (e: Entry) => number, now: number): number {
    let freed = 0;
    for (let i = log.head; i < log.entries.length; i++) {
      freed += weight(log.entries[i]!);
      if (freed >= excess) return log.entries[i]!.at + windowMs - now;
    }
    return windowMs; // can never fit (a limit below one request); admission refuses these before asking
  }

  /** The tokens dimension of a refusal (`tokensWait`), or none when tokens fit. */
  function tokensRefusal(log: KeyLog, excess: number, need: number, tokensPerMinute: number, now: number) {
    if (excess <= 0) return { tokensWaitMs: 0 };
    if (need > tokensPerMinute) return { tokensWaitMs: windowMs };
    const wait = tokensWait({ sum: log.tokens, inFlight: log.inFlight, need, tokensPerMinute }, (settledExcess) =>
      waitFor(log, settledExcess, (e) => (e.settled ? e.tokens : 0), now),
    );
    return { tokensWaitMs: wait.waitMs, inFlightTokens: wait.inFlightTokens };
  }

  return {
    admit(request): RateDecision {
      const { keyId, decisionId, requestsPerMinute, tokensPerMinute, tokens, now } = request;
      const log = logFor(keyId, now);
      const count = log.entries.length - log.head;
      const requestsExcess = count + 1 - requestsPerMinute;
      const tokensExcess = log.tokens + tokens - tokensPerMinute;
      const newest = count > 0 ? log.entries[log.entries.length - 1]!.at : null;
      const limits = quotaLimits(request);
      const day = quotas.figures(keyId, limits, now);
      if (requestsExcess > 0 || tokensExcess > 0) {
        return rateDecision(
          { requestsPerMinute, tokensPerMinute, requests: count, tokens: log.tokens, newestAt: newest, now, day },
          {
            requestsWaitMs: requestsExcess > 0 ? waitFor(log, requestsExcess, () => 1, now) : 0,
            ...tokensRefusal(log, tokensExcess, tokens, tokensPerMinute, now),
          },
        );
      }
      const other = quotas.check(keyId, limits, tokens, now);
      if (other) {
        const { inFlightTokens, ...refusedBy } = other;
        return rateDecision(
          { requestsPerMinute, tokensPerMinute, requests: count, tokens: log.tokens, newestAt: newest, now, day },
          { requestsWaitMs: 0, tokensWaitMs: 0, other: refusedBy, inFlightTokens },
        );
      }
      quotas.hold(keyId, decisionId, limits, tokens, now);
      const entry: Entry = { at: now, decisionId, tokens, settled: false };
      // Keep time order even if a caller's clock steps back a little.
      let i = log.entries.length;
      while (i > log.head && log.entries[i - 1]!.at > now) i--;
      if (i === log.entries.length) log.entries.push(entry);
      else log.entries.splice(i, 0, entry);
      log.byDecision.set(decisionId, entry);
      log.tokens += tokens;
      log.inFlight += tokens;
      return rateDecision(
        {
          requestsPerMinute,
          tokensPerMinute,
          requests: count + 1,
          tokens: log.tokens,
          newestAt: Math.max(now, newest ?? now),
          now,
          day: day && { ...day, requests: day.requests + 1, tokens: day.tokens + tokens },
        },
        null,
      );
    },
    settle({ keyId, decisionId, actualTokens }) {
      quotas.settle(keyId, decisionId, actualTokens);
      const log = logs.get(keyId);
      const entry = log?.byDecision.get(decisionId);
      if (!log || !entry) return; // aged out or released: nothing left to correct
      log.tokens += actualTokens - entry.tokens;
      if (!entry.settled) log.inFlight -= entry.tokens;
      entry.tokens = actualTokens;
      entry.settled = true;
    },
    release({ keyId, decisionId }) {
      quotas.release(keyId, decisionId);
      const log = logs.get(keyId);
      const entry = log?.byDecision.get(decisionId);
      if (!log || !entry) return;
      log.byDecision.delete(decisionId);
      log.tokens -= entry.tokens;
      if (!entry.settled) log.inFlight -= entry.tokens;
      const at = log.entries.indexOf(entry, log.head);
      if (at >= 0) log.entries.splice(at, 1);
    },
    peek(request) {
      const { keyId, requestsPerMinute, tokensPerMinute, now } = request;
      const log = logs.get(keyId);
      let requests = 0;
      let tokens = 0;
      let newestAt: number | null = null;
      for (let i = log?.head ?? 0; log && i < log.entries.length; i++) {
        const e = log.entries[i]!;
        if (e.at <= now - windowMs) continue;
        requests++;
        tokens += e.tokens;
        newestAt = Math.max(newestAt ?? e.at, e.at);
      }
      const limits = quotaLimits(request);
      const day = quotas.figures(keyId, limits, now);
      return {
        state: rateDecision({ requestsPerMinute, tokensPerMinute, requests, tokens, newestAt, now, day }, null).state!,
        inFlight: limits.maxConcurrency > 0 ? quotas.inFlightNow(keyId, now) : 0,
      };
    },
    keyCount: () => logs.size,
  };
}
