// Review of issue 14: without Redis, a clean stop hands the open credit reservations to the next authz process through
// SQL (handed_over_reservations). Each must keep the key it was admitted for, or across a restart the key's budget
// misses it (a second worst case is admitted past the cap) and its expiry charge is not the key's spend.
import { describe, expect, it } from "vitest";
import type { Budget } from "../../src/domain/budgets.js";
import { nanos } from "../../src/domain/money.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { budgetRequest } from "../support/budgets.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores } from "../support/services.js";

const DAY = 86_400_000;

describe("hand-over of reservations keeps their key", () => {
  describeStores("across a real stop and start (no Redis)", (makeTarget) => {
    it("the successor holds a handed-over reservation against its key's budget and charges its expiry to the key", async () => {
      const target = makeTarget();
      const shared = { ...target, cleanup: async () => undefined };
      const planes: TestPlane[] = [];
      try {
        const a = await startTestPlane(shared);
        planes.push(a);
        const probe = await a.account("pro");
        const probed = outcome(await a.authz.check(budgetRequest(probe.secret)));
        const worst = BigInt(probed.metadata.reserved_nanos as string);
        // A daily budget for one worst case and a half: one request in flight leaves no room for a second.
        const budget: Budget = { limit: nanos(worst + worst / 2n), period: "day" };
        const { keyId, secret } = await a.account("pro", { budget });
        const first = outcome(await a.authz.check(budgetRequest(secret)));
        expect(first.allowed).toBe(true);
        await a.close();
        planes.pop();

        const b = await startTestPlane(shared);
        planes.push(b);
        const second = outcome(await b.authz.check(budgetRequest(secret)));
        expect(second.httpStatus).toBe(402);
        expect(second.error?.code).toBe("budget_exceeded");

        // Its entry never comes: it expires into a charge, which is the key's spend.
        const now = Date.now();
        const expired = await b.plane.metering.credits.expired(now + DAY);
        const mine = expired.filter((r) => r.decisionId === first.metadata.decision_id);
        expect(mine).toHaveLength(1);
        expect(mine[0]!.keyId).toBe(keyId);
        const result = await b.plane.stores.ledger.commit({ events: [], expired: mine, deadLetters: [], now });
        await b.plane.metering.credits.committed(result.changes);
        const status = outcome(
          await b.authz.check(
            envoyCheckRequest({ method: "GET", path: "/v1/key", headers: { authorization: `Bearer ${secret}` } }),
          ),
        );
        expect(JSON.parse(status.body).budget.key).toMatchObject({ spent_nano_usd: worst.toString() });
      } finally {
        for (const p of planes.reverse()) await p.close();
        await target.cleanup();
      }
    });
  });
});
