import { describe, expect, it } from "vitest";
import { budgetAlertEvents, type BudgetSpendChange } from "../../src/domain/budget-alerts.js";
import { nanos } from "../../src/domain/money.js";

const day = Date.UTC(2026, 11, 1);
const change = (before: bigint, after: bigint, over: Partial<BudgetSpendChange> = {}): BudgetSpendChange => ({
  accountId: "acct_1",
  scope: "key",
  keyId: "key_1",
  period: "day",
  window: { id: "day:2026-12-01", start: day, end: day + 86_400_000 },
  budget: nanos(1000n),
  before,
  after,
  ...over,
});

describe("budget alerts: budget.threshold at 80%, budget.exhausted at 100%, once per scope and period", () => {
  it("fires the soft threshold when spend crosses 80%", () => {
    expect(budgetAlertEvents(change(799n, 800n))).toEqual([
      {
        type: "budget.threshold",
        accountId: "acct_1",
        dedupeKey: "budget.threshold:key_1:day:2026-12-01",
        data: {
          scope: "key",
          key_id: "key_1",
          period: "day",
          budget_nano_usd: "1000",
          spent_nano_usd: "800",
          threshold_percent: 80,
          period_start: "2026-12-01T00:00:00.000Z",
          resets_at: "2026-12-02T00:00:00.000Z",
        },
      },
    ]);
  });

  it("fires exhausted at the budget, both when one commit jumps over both, nothing below or already past", () => {
    expect(budgetAlertEvents(change(900n, 1000n)).map((e) => e.type)).toEqual(["budget.exhausted"]);
    expect(budgetAlertEvents(change(100n, 1200n)).map((e) => e.type)).toEqual(["budget.threshold", "budget.exhausted"]);
    expect(budgetAlertEvents(change(100n, 799n))).toEqual([]);
    expect(budgetAlertEvents(change(800n, 900n))).toEqual([]);
    expect(budgetAlertEvents(change(1000n, 1100n))).toEqual([]);
    expect(budgetAlertEvents(change(900n, 850n))).toEqual([]); // an adjustment gave some back
  });

  it("an account's budget names no key; a lifetime budget never resets", () => {
    const [e] = budgetAlertEvents(
      change(0n, 1000n, {
        scope: "account",
        keyId: undefined,
        period: "lifetime",
        window: { id: "lifetime", start: 0, end: null },
      }),
    ).filter((x) => x.type === "budget.exhausted");
    expect(e).toMatchObject({
      dedupeKey: "budget.exhausted:acct_1:lifetime",
      data: { scope: "account", resets_at: null },
    });
    expect(e!.data).not.toHaveProperty("key_id");
  });
});
