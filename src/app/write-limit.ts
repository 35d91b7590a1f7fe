import type { Principal } from "../domain/admin-store.js";
import { AppError } from "../domain/errors.js";
import { createTokenBuckets } from "../domain/token-bucket.js";

/**
 * Bounds how fast one admin token may act. Every key change writes an audit row, is published to every replica and
 * sends in-flight key loads back to SQL, and every request (reads too) verifies its token and reads SQL, so an account
 * token's calls are a shared cost: each account token has a token bucket per limiter (one for requests, one for
 * changes); operators are trusted and not limited.
 */
export interface WriteLimiter {
  /** Takes one from `who`'s bucket; throws ResourceExhausted (with when to retry) when it is empty. */
  take(who: Principal): void;
}

/** Account tokens whose buckets are remembered (past it the least recently used starts over with a full one). */
const MAX_TOKENS = 100_000;

/**
 * Creates the limiter: `perSecond` refill and `burst` capacity per account token; `what` names what it counts in its
 * refusal ("changes" unless given).
 */
export function createWriteLimiter(options: {
  perSecond: number;
  burst: number;
  clock: () => number;
  what?: string;
}): WriteLimiter {
  const { perSecond, burst, clock, what = "changes" } = options;
  const take = createTokenBuckets({ perSecond, burst, maxIds: MAX_TOKENS });
  return {
    take(who) {
      if (who.kind === "operator") return;
      const waitMs = take(who.tokenId, clock());
      if (waitMs > 0) {
        throw new AppError(
          "resource_exhausted",
          `too many ${what} from this admin token (at most ${perSecond} a second, bursts of ${burst}); retry in ${Math.ceil(waitMs / 100) / 10}s`,
        );
      }
    },
  };
}
