// Review of issue 14: free credit is spent first, and a refund of that spending must go back to the free part. A
// reservation that expired into its worst-case charge (a long stream, a lost access-log entry) takes it out of the
// free part; the late settlement's adjustment gives most of it back, but to the paid part. Free credit thus turns into
// paid credit, which the next monthly grant does not count: "unused free credit does not pile up" no longer holds.
import { expect, it } from "vitest";
import { sweepGrants } from "../../src/app/grants.js";
import { nanos } from "../../src/domain/money.js";
import { settled } from "../support/budgets.js";
import { startTestPlane } from "../support/control-plane.js";
import { describeStores, type StoreTarget } from "../support/services.js";

const USD = 1_000_000_000n;

describeStores("free tier refunds", (target: () => StoreTarget) => {
  it("an expired charge corrected by the real, cheaper settlement leaves the free part whole (no free-to-paid conversion)", async () => {
    const now = Date.parse("2026-12-01T10:00:00Z");
    const t = await startTestPlane(target(), { clock: () => now, accountCredits: 0n });
    try {
      const { accountId, keyId } = await t.account("basic");
      const ledger = t.plane.stores.ledger;
      expect((await t.plane.stores.admin.balance(accountId)).free).toBe(1n * USD);
      // A worst-case reservation of USD 0.50 expires into a charge: the free part goes first.
      await ledger.commit({
        events: [],
        expired: [{ accountId, decisionId: "dec_long_stream", amount: nanos(USD / 2n), keyId }],
        deadLetters: [],
        now,
      });
      // The access-log entry arrives late: the request cost USD 0.01; the adjustment gives USD 0.49 back.
      const late = settled(
        [{ metadata: { decision_id: "dec_long_stream", key_id: keyId } }],
        accountId,
        USD / 100n,
        now,
      );
      await ledger.commit({ events: late, expired: [], deadLetters: [], now });
      const view = await t.plane.stores.admin.balance(accountId);
      expect(view.balance).toBe(USD - USD / 100n);
      // Nothing was ever paid for: every nano of the balance is free credit.
      expect(view.free).toBe(view.balance);
      // And January's grant tops the free part up to USD 1, never the balance above it.
      await sweepGrants(
        t.plane.stores.grants,
        { committed: async () => undefined } as never,
        Date.parse("2027-01-01T00:00:05Z"),
      );
      expect((await ledger.balance(accountId)).balance).toBe(1n * USD);
    } finally {
      await t.close();
    }
  });

  it("the refund goes to the free part only up to what the charge took from it, once, and never above the balance", async () => {
    const now = Date.parse("2026-12-01T10:00:00Z");
    const t = await startTestPlane(target(), { clock: () => now, accountCredits: 0n });
    try {
      const { accountId, keyId } = await t.account("basic");
      const ledger = t.plane.stores.ledger;
      await ledger.topUp({ accountId, amount: nanos(2n * USD), feeBps: 0, now });
      // USD 1 free + USD 2 paid. A charge of USD 1.50 takes the whole free part and USD 0.50 of the paid part.
      await ledger.commit({
        events: [],
        expired: [{ accountId, decisionId: "dec_big", amount: nanos((3n * USD) / 2n), keyId }],
        deadLetters: [],
        now,
      });
      expect(await t.plane.stores.admin.balance(accountId)).toMatchObject({ balance: (3n * USD) / 2n, free: 0n });
      // It really cost USD 0.20: USD 1.30 comes back, USD 1 of it to the free part (all the charge took there).
      const late = settled([{ metadata: { decision_id: "dec_big", key_id: keyId } }], accountId, USD / 5n, now);
      await ledger.commit({ events: late, expired: [], deadLetters: [], now });
      expect(await t.plane.stores.admin.balance(accountId)).toMatchObject({
        balance: 3n * USD - USD / 5n,
        free: 1n * USD,
      });
      // The same settlement again (a replay) moves nothing, the free part included.
      await ledger.commit({ events: late, expired: [], deadLetters: [], now });
      expect(await t.plane.stores.admin.balance(accountId)).toMatchObject({
        balance: 3n * USD - USD / 5n,
        free: 1n * USD,
      });
      // A settlement dearer than the charge is a further debit: from the free part first.
      await ledger.commit({
        events: [],
        expired: [{ accountId, decisionId: "dec_dear", amount: nanos(USD / 10n), keyId }],
        deadLetters: [],
        now,
      });
      const dear = settled([{ metadata: { decision_id: "dec_dear", key_id: keyId } }], accountId, USD / 2n, now);
      await ledger.commit({ events: dear, expired: [], deadLetters: [], now });
      expect(await t.plane.stores.admin.balance(accountId)).toMatchObject({
        balance: 3n * USD - USD / 5n - USD / 2n,
        free: USD / 2n,
      });
    } finally {
      await t.close();
    }
  });
});
