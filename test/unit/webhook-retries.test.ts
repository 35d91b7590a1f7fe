import { describe, expect, it } from "vitest";
import { outcomeOf } from "../../src/app/webhook-dispatcher.js";
import { lowBalanceTransition, nextAttemptDelay } from "../../src/domain/webhooks.js";
import { nanos } from "../../src/domain/money.js";

const policy = { baseMs: 1000, maxMs: 60_000, maxAttempts: 8 };

describe("webhook retries: exponential back-off with jitter, then give up", () => {
  it("doubles from the base, half fixed and half random, capped", () => {
    expect(nextAttemptDelay(1, policy, 0)).toBe(500);
    expect(nextAttemptDelay(1, policy, 0.999999)).toBe(1000);
    expect(nextAttemptDelay(2, policy, 0)).toBe(1000);
    expect(nextAttemptDelay(4, policy, 0.5)).toBe(6000);
    expect(nextAttemptDelay(7, policy, 0.999999)).toBe(60_000);
    expect(nextAttemptDelay(8, policy, 0.5)).toBeUndefined();
  });

  it("2xx is delivered; any other answer or no answer is retried, and failed after the last attempt", () => {
    const now = 1_000_000;
    expect(outcomeOf({ kind: "answered", status: 204 }, 1, policy, now, 0)).toEqual({
      kind: "delivered",
      statusCode: 204,
    });
    expect(outcomeOf({ kind: "answered", status: 500 }, 1, policy, now, 0)).toEqual({
      kind: "retry",
      statusCode: 500,
      error: "the receiver answered HTTP 500",
      nextAttemptAt: now + 500,
    });
    expect(outcomeOf({ kind: "answered", status: 301 }, 2, policy, now, 0)).toMatchObject({ kind: "retry" });
    expect(outcomeOf({ kind: "failed", error: "timed out after 10 ms" }, 3, policy, now, 0)).toMatchObject({
      kind: "retry",
      statusCode: 0,
      error: "timed out after 10 ms",
    });
    expect(outcomeOf({ kind: "answered", status: 410 }, 8, policy, now, 0)).toEqual({
      kind: "failed",
      statusCode: 410,
      error: "the receiver answered HTTP 410 (gave up after 8 attempts)",
    });
  });
});

describe("balance.low fires on the way down, once, and re-arms at or above the threshold", () => {
  const watch = (balance: bigint, alerted: boolean) => ({
    webhookId: "wh_1",
    accountId: "acct_1",
    threshold: nanos(5_000_000_000n),
    balance: nanos(balance),
    alerted,
  });
  it("decides", () => {
    expect(lowBalanceTransition(watch(4_999_999_999n, false))).toBe("fire");
    expect(lowBalanceTransition(watch(4_999_999_999n, true))).toBeUndefined();
    expect(lowBalanceTransition(watch(5_000_000_000n, true))).toBe("rearm");
    expect(lowBalanceTransition(watch(6_000_000_000n, false))).toBeUndefined();
  });
});
