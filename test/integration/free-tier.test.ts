import { afterEach, describe, expect, it } from "vitest";
import { openStores, type Stores } from "../../src/app/stores.js";
import { sweepGrants } from "../../src/app/grants.js";
import { loadConfig } from "../../src/config/config.js";
import { grantMonth, grantReference } from "../../src/domain/grants.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { settled } from "../support/budgets.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores, sqliteTarget, type StoreTarget } from "../support/services.js";

const USD = 1_000_000_000n;

/** An ordinary Basic-tier chat request that may use up to 16,000 output tokens (about USD 0.08 worst case). */
function chat(secret: string) {
  return envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "claude-haiku-4.5",
      max_tokens: 16000,
      messages: [{ role: "user", content: "Hello from the free tier" }],
    }),
  });
}

describe("free tier [sqlite + in-process]", () => {
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("a new Basic account with no top-up makes requests on its monthly grant, then gets 402 once it is spent", async () => {
    let now = Date.parse("2026-12-01T10:00:00Z");
    t = await startTestPlane(sqliteTarget(), { clock: () => now, accountCredits: 0n });
    const { accountId, secret } = await t.account("basic");
    const ledger = t.plane.stores.ledger;
    expect((await ledger.balance(accountId)).balance).toBe(1n * USD);

    let admitted = 0;
    let spent = 0n;
    for (let i = 0; i < 40; i++) {
      const verdict = outcome(await t.authz.check(chat(secret)));
      if (!verdict.allowed) {
        expect(verdict.httpStatus).toBe(402);
        expect(verdict.error?.code).toBe("insufficient_credits");
        break;
      }
      admitted++;
      const worst = BigInt(verdict.metadata.reserved_nanos as string);
      spent += worst;
      // The meter settles it at its worst case; a minute later the key's window is empty again (Basic: 10 RPM).
      const result = await ledger.commit({
        events: settled([verdict], accountId, worst, now),
        expired: [],
        deadLetters: [],
        now,
      });
      await t.plane.metering.credits.committed(result.changes);
      now += 61_000;
    }
    // About USD 0.08 a request: twelve fit in the grant, the thirteenth does not.
    expect(admitted).toBe(12);
    expect(spent).toBeLessThanOrEqual(1n * USD);
    const entries = await ledger.entries(accountId);
    expect(entries.filter((e) => e.kind === "grant")).toEqual([
      { kind: "grant", amount: 1n * USD, decisionId: grantReference(accountId, "2026-12"), estimated: false },
    ]);
    // Free credit carries no platform fee, and nothing but the grant ever credited this account.
    expect(entries.some((e) => e.kind === "platform_fee" || e.kind === "top_up")).toBe(false);
    expect(await ledger.entriesTotal(accountId)).toBe((await ledger.balance(accountId)).balance);
    // The free part went first and is what was left of the grant.
    const view = await t.plane.stores.admin.balance(accountId);
    expect(view.free).toBe(1n * USD - spent);
  }, 60_000);
});

describeStores("monthly grants", (target: () => StoreTarget) => {
  let opened: Stores[] = [];
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    for (const s of opened) await s.db.close();
    opened = [];
    await cleanup?.();
    cleanup = undefined;
  });

  /** Both sweeps together on PostgreSQL; one after the other on SQLite (two connections in one process would block). */
  let together = true;
  const both = async (x: () => Promise<number>, y: () => Promise<number>) =>
    together ? (await Promise.all([x(), y()])).reduce((m, n) => m + n) : (await x()) + (await y());

  async function twoProcesses(): Promise<[Stores, Stores]> {
    const tgt = target();
    together = tgt.name === "postgres";
    cleanup = tgt.cleanup;
    const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: tgt.url } });
    // Accounts are created on 1 December 2026 (the clock of the stores' account creation).
    const clock = () => Date.parse("2026-12-01T00:00:00Z");
    const a = await openStores(config, { schema: tgt.schema, clock });
    const b = await openStores(config, { schema: tgt.schema, clock });
    opened = [a, b];
    return [a, b];
  }

  const noGate = { committed: async () => undefined } as never;

  it("are applied once per account and month, even by two processes at once, and top the free part up, not on", async () => {
    const [a, b] = await twoProcesses();
    const dec = Date.parse("2026-12-01T00:00:00Z");
    const account = await a.accounts.create({ name: "free", planId: "basic" });
    // Creation granted December already; two sweeps at once grant nothing more.
    expect(
      await both(
        () => sweepGrants(a.grants, noGate, dec + 1000),
        () => sweepGrants(b.grants, noGate, dec + 1000),
      ),
    ).toBe(0);
    // January: an account created in the past that has no grant this month yet; both processes sweep at once.
    const jan = Date.parse("2027-01-01T00:00:05Z");
    expect(
      await both(
        () => sweepGrants(a.grants, noGate, jan),
        () => sweepGrants(b.grants, noGate, jan),
      ),
    ).toBe(1);
    const grants = (await a.ledger.entries(account.id)).filter((e) => e.kind === "grant");
    expect(grants.map((g) => g.decisionId).sort()).toEqual(
      [grantReference(account.id, grantMonth(jan)), grantReference(account.id, grantMonth(dec))].sort(),
    );
    // Nothing of December's grant was spent, so January's tops the free part up to USD 1: it adds nothing.
    expect((await a.ledger.balance(account.id)).balance).toBe(1n * USD);
    expect((await a.admin.balance(account.id)).free).toBe(1n * USD);
  });
});
