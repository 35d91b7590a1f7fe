/** A token bucket per id: `perSecond` refill, `burst` capacity, at most `maxIds` ids remembered. */
export interface TokenBucketLimits {
  perSecond: number;
  burst: number;
  /** Ids remembered at most; the least recently used is forgotten first (a forgotten id starts with a full bucket). */
  maxIds: number;
}

/**
 * Token buckets by id, O(1) per take (the map is kept in last-use order). The returned function takes one token from
 * `id`'s bucket at `now` (ms) and returns 0, or, when the bucket is empty, the milliseconds until it holds one.
 */
export function createTokenBuckets(limits: TokenBucketLimits): (id: string, now: number) => number {
  const { perSecond, burst, maxIds } = limits;
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (id, now) => {
    const bucket = buckets.get(id) ?? { tokens: burst, at: now };
    buckets.delete(id);
    buckets.set(id, bucket);
    if (buckets.size > maxIds) buckets.delete(buckets.keys().next().value!);
    bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) * perSecond) / 1000);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) * 1000) / perSecond);
  };
}
