import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createBatcher } from "../../../src/dataplane/accesslog/batcher.js";

/** A batcher over numbers (each of size 1) whose commits the test completes by hand. */
function harness(options: { maxBatch: number; windowMs: number; concurrency?: number }) {
  const batches: number[][] = [];
  const pending: Array<() => void> = [];
  const batcher = createBatcher<number>({
    ...options,
    concurrency: options.concurrency ?? 1,
    sizeOf: () => 1,
    commit: (items) => {
      batches.push(items);
      return new Promise<void>((resolve) => pending.push(resolve));
    },
  });
  const finishOne = async () => {
    pending.shift()!();
    await vi.advanceTimersByTimeAsync(0);
  };
  return { batcher, batches, pending, finishOne };
}

describe("batcher", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("commits at once when the queue reaches maxBatch, without waiting for the window", () => {
    const { batcher, batches } = harness({ maxBatch: 3, windowMs: 60_000 });
    batcher.add(1);
    batcher.add(2);
    expect(batches).toEqual([]);
    batcher.add(3);
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it("commits a partial batch when the window after its first item closes, not before", async () => {
    const { batcher, batches } = harness({ maxBatch: 100, windowMs: 50 });
    batcher.add(1);
    await vi.advanceTimersByTimeAsync(30);
    batcher.add(2);
    await vi.advanceTimersByTimeAsync(19);
    expect(batches).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[1, 2]]);
  });

  it("holds items while every slot is busy, then commits them in batches of at most maxBatch", async () => {
    const { batcher, batches, finishOne } = harness({ maxBatch: 2, windowMs: 10 });
    batcher.add(1);
    batcher.add(2);
    for (const n of [3, 4, 5]) batcher.add(n);
    await vi.advanceTimersByTimeAsync(100);
    expect(batches).toEqual([[1, 2]]);
    await finishOne();
    expect(batches).toEqual([
      [1, 2],
      [3, 4],
    ]);
    await finishOne();
    await vi.advanceTimersByTimeAsync(10);
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("runs other tasks only in a free slot, and drain waits for them and for the queue", async () => {
    const { batcher, batches, finishOne } = harness({ maxBatch: 10, windowMs: 10 });
    batcher.add(1);
    batcher.flush();
    let ran = false;
    expect(batcher.tryRun(async () => void (ran = true))).toBe(false);
    batcher.add(2);
    let drained = false;
    void batcher.drain().then(() => (drained = true));
    await finishOne();
    // The freed slot takes the queue when its window closes.
    await vi.advanceTimersByTimeAsync(10);
    expect(batches).toEqual([[1], [2]]);
    expect(drained).toBe(false);
    await finishOne();
    expect(drained).toBe(true);
    expect(batcher.tryRun(async () => void (ran = true))).toBe(true);
    expect(ran).toBe(true);
  });
});
