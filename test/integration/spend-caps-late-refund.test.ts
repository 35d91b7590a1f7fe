// Review of issue 14: spend totals count each commit in the period in force when it is committed. A reservation that
// expired into its worst-case charge just before a period ended counts in that period; its late settlement's
// adjustment (a refund of most of it) counts in the next one, as negative spend, which widens the next period's
// budget by the refund: a key can spend more than its cap in one period.
import { describe, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { outcome } from "../support/authz-client.js";
import { budgetRequest, settled } from "../support/budgets.js";
import { startTestPlane } from "../support/control-plane.js";
import { sqliteTarget } from "../support/services.js";

describe("late refunds and budget periods [sqlite + in-process]", () => {
  it("yesterday's expired charges refunded today do not let today's requests exceed today's budget", async () => {
    let now = Date.parse("2026-12-01T23:40:00Z");
    const t = await startTestPlane(sqliteTarget(), { clock: () => now });
    try {
      const probe = await t.account("pro");
      const worst = BigInt(outcome(await t.authz.check(budgetRequest(probe.secret))).metadata.reserved_nanos as string);
      // A daily budget of two worst-case requests.
      const { accountId, secret } = await t.account("pro", { budget: { limit: nanos(2n * worst), period: "day" } });
      const ledger = t.plane.stores.ledger;
      const commit = async (input: Parameters<typeof ledger.commit>[0]) =>
        t.plane.metering.credits.committed((await ledger.commit(input)).changes);
      const yesterday = [
        outcome(await t.authz.check(budgetRequest(secret))),
        outcome(await t.authz.check(budgetRequest(secret))),
      ];
      expect(yesterday.every((r) => r.allowed)).toBe(true);
      // Just before midnight both reservations expire into worst-case charges (long streams).
      now = Date.parse("2026-12-01T23:59:00Z");
      await commit({
        events: [],
        expired: yesterday.map((r) => ({
          accountId,
          decisionId: r.metadata.decision_id as string,
          amount: nanos(worst),
          keyId: r.metadata.key_id as string,
        })),
        deadLetters: [],
        now,
      });
      // After midnight the streams end; each cost 1 nano-USD, so each adjustment refunds worst - 1.
      now = Date.parse("2026-12-02T00:05:00Z");
      await commit({ events: settled(yesterday, accountId, 1n, now), expired: [], deadLetters: [], now });
      // Today: at most two worst-case requests fit the daily budget.
      const today = [];
      for (let i = 0; i < 5; i++) today.push(outcome(await t.authz.check(budgetRequest(secret))));
      expect(today.filter((r) => r.allowed).length).toBeLessThanOrEqual(2);
    } finally {
      await t.close();
    }
  });
});
