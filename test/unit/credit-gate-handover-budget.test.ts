// Review of issue 14: reservations handed from one in-process gate to its successor keep the key they were admitted
// for, so the successor holds them against the key's budget and charges their expiry to the key. Across a real stop
// and start (the SQL hand-over table): test/integration/credit-handover-key-budget.test.ts.
import { describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { budgetHolds } from "../../src/domain/budgets.js";
import { nanos } from "../../src/domain/money.js";

const NOW = Date.parse("2026-12-01T12:00:00Z");

describe("in-process credit gate hand-over", () => {
  it("a successor holds the handed-over reservations against the key's budget", async () => {
    const source = {
      balances: async (ids: readonly string[]) =>
        new Map(ids.map((id) => [id, { balance: nanos(10n ** 12n), version: 1 }])),
    };
    const key = { id: "key_a", budget: { limit: nanos(1000n), period: "day" as const } };
    const account = { id: "acct_a" };
    const budgets = budgetHolds(key, account, NOW);
    const first = createMemoryCreditGate({ source, reservationTtlMs: 600_000 });
    const one = await first.reserve({
      accountId: "acct_a",
      decisionId: "d1",
      amount: nanos(600n),
      now: NOW,
      keyId: "key_a",
      budgets,
    });
    expect(one.reserved).toBe(true);
    const successor = createMemoryCreditGate({ source, reservationTtlMs: 600_000 });
    await successor.restore(first.held());
    // 600 held + 600 > 1000: the key's budget refuses, as the first gate would have.
    const two = await successor.reserve({
      accountId: "acct_a",
      decisionId: "d2",
      amount: nanos(600n),
      now: NOW + 1,
      keyId: "key_a",
      budgets,
    });
    expect(two.reserved).toBe(false);
    expect("budget" in two).toBe(true);
    // And its expiry charge is the key's.
    expect((await successor.expired(NOW + 600_000)).find((r) => r.decisionId === "d1")?.keyId).toBe("key_a");
  });
});
