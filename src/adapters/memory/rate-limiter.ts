import type { RateDecision, RateLimiter } from "../../domain/admission.js";
import { RATE_WINDOW_MS, rateDecision } from "../../domain/rate-limit.js";

interface Entry {
  at: number;
  decisionId: string;
  tokens: number;
}

/** One key's log: admissions in time order from `head`, with running totals. */
interface KeyLog {
  entries: Entry[];
  head: number;
  tokens: number;
  byDecision: Map<string, Entry>;
}

/** Options for the in-process limiter. */
export interface MemoryRateLimiterOptions {
  /** The sliding window; tests may shorten it, production keeps 60 s. */
  windowMs?: number;
}

/** The in-process limiter, plus how many keys it holds (to show memory stays bounded). */
export interface MemoryRateLimiter extends RateLimiter {
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

  function prune(log: KeyLog, now: number): void {
    const cutoff = now - windowMs;
    while (log.head < log.entries.length && log.entries[log.head]!.at <= cutoff) {
      const old = log.entries[log.head++]!;
      log.tokens -= old.tokens;
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
    if (!log) logs.set(keyId, (log = { entries: [], head: 0, tokens: 0, byDecision: new Map() }));
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

  return {
    admit({ keyId, decisionId, requestsPerMinute, tokensPerMinute, tokens, now }): RateDecision {
      const log = logFor(keyId, now);
      const count = log.entries.length - log.head;
      const requestsExcess = count + 1 - requestsPerMinute;
      const tokensExcess = log.tokens + tokens - tokensPerMinute;
      const newest = count > 0 ? log.entries[log.entries.length - 1]!.at : null;
      if (requestsExcess > 0 || tokensExcess > 0) {
        return rateDecision(
          { requestsPerMinute, tokensPerMinute, requests: count, tokens: log.tokens, newestAt: newest, now },
          {
            requestsWaitMs: requestsExcess > 0 ? waitFor(log, requestsExcess, () => 1, now) : 0,
            tokensWaitMs: tokensExcess > 0 ? (tokens > tokensPerMinute ? windowMs : waitFor(log, tokensExcess, (e) => e.tokens, now)) : 0,
          },
        );
      }
      const entry: Entry = { at: now, decisionId, tokens };
      // Keep time order even if a caller's clock steps back a little.
      let i = log.entries.length;
      while (i > log.head && log.entries[i - 1]!.at > now) i--;
      if (i === log.entries.length) log.entries.push(entry);
      else log.entries.splice(i, 0, entry);
      log.byDecision.set(decisionId, entry);
      log.tokens += tokens;
      return rateDecision(
        { requestsPerMinute, tokensPerMinute, requests: count + 1, tokens: log.tokens, newestAt: Math.max(now, newest ?? now), now },
        null,
      );
    },
    settle({ keyId, decisionId, actualTokens }) {
      const log = logs.get(keyId);
      const entry = log?.byDecision.get(decisionId);
      if (!log || !entry) return; // aged out or released: nothing left to correct
      log.tokens += actualTokens - entry.tokens;
      entry.tokens = actualTokens;
    },
    release({ keyId, decisionId }) {
      const log = logs.get(keyId);
      const entry = log?.byDecision.get(decisionId);
      if (!log || !entry) return;
      log.byDecision.delete(decisionId);
      log.tokens -= entry.tokens;
      const at = log.entries.indexOf(entry, log.head);
      if (at >= 0) log.entries.splice(at, 1);
    },
    keyCount: () => logs.size,
  };
}
