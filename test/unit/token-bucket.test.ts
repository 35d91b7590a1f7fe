import { describe, expect, it } from "vitest";
import { createTokenBuckets } from "../../src/domain/token-bucket.js";

describe("token buckets by id", () => {
  it("takes a burst at once, then refills at the rate, and says how long to wait", () => {
    const take = createTokenBuckets({ perSecond: 2, burst: 3, maxIds: 10 });
    expect([take("a", 0), take("a", 0), take("a", 0)]).toEqual([0, 0, 0]);
    expect(take("a", 0)).toBe(500);
    expect(take("a", 499)).toBe(2);
    expect(take("a", 500)).toBe(0);
    // Another id has a bucket of its own.
    expect(take("b", 500)).toBe(0);
  });

  it("remembers at most maxIds ids, forgetting the least recently used (which starts over full)", () => {
    const take = createTokenBuckets({ perSecond: 1, burst: 1, maxIds: 2 });
    take("a", 0);
    take("b", 0);
    expect(take("a", 0)).toBeGreaterThan(0); // a is now the most recent
    take("c", 0); // b is forgotten, not a
    expect(take("a", 0)).toBeGreaterThan(0);
    expect(take("b", 0)).toBe(0);
  });
});
