import knexFactory from "knex";
import { afterEach, describe, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { outcome } from "../support/authz-client.js";
import { spendCheck as check, worstCaseEvents } from "../support/credit-stack.js";
import { describeStores, sqliteTarget, type StoreTarget } from "../support/services.js";

const IN_FLIGHT = 5;

/**
 * Without Redis, an authz process holds its credit reservations in memory. Envoy keeps streaming the requests it
 * admitted after it stops, so a restart must not forget them: a clean stop hands them over (SQL, with the lease),
 * and after a crash its successor fences paid admissions until whatever it reserved has expired. The harness: the
 * planes of one test on one database (cleaned up after it), and how a test spends an account's credit.
 */
function harness() {
  let target: StoreTarget | undefined;
  const planes: TestPlane[] = [];
  afterEach(async () => {
    for (const p of planes.splice(0).reverse()) await p.close();
    await target?.cleanup();
    target = undefined;
  });
  const clock = { now: Date.now() };
  const start = async () => {
    const t = await startTestPlane(
      { ...target!, cleanup: async () => undefined },
      { accountCredits: 0n, clock: () => clock.now },
    );
    planes.push(t);
    return t;
  };
  const stop = async (t: TestPlane) => {
    planes.splice(planes.indexOf(t), 1);
    await t.close();
  };

  /** An account funded for exactly IN_FLIGHT worst-case requests, all admitted and still running. */
  async function spendAll(t: TestPlane) {
    const ledger = t.plane.stores.ledger;
    const probe = await t.account("pro");
    await ledger.topUp({ accountId: probe.accountId, amount: nanos(1_000_000_000n), feeBps: 0, now: Date.now() });
    const worst = BigInt(outcome(await t.authz.check(check(probe.secret))).metadata.reserved_nanos as string);
    const { accountId, secret } = await t.account("pro");
    await ledger.topUp({ accountId, amount: nanos(BigInt(IN_FLIGHT) * worst), feeBps: 0, now: Date.now() });
    const admitted = [];
    for (let i = 0; i < IN_FLIGHT; i++) admitted.push(outcome(await t.authz.check(check(secret))));
    expect(admitted.every((r) => r.allowed)).toBe(true);
    expect(outcome(await t.authz.check(check(secret))).httpStatus).toBe(402);
    return { accountId, secret, worst, admitted };
  }

  return { start, stop, spendAll, clock, use: (t: StoreTarget) => (target = t) };
}

describeStores("a clean restart of the only admission process (no Redis) hands its reservations over", (makeTarget) => {
  const { start, stop, spendAll, use } = harness();

  it("after a clean restart the new process still holds the old one's reservations (402), and settles them", async () => {
    use(makeTarget());
    const a = await start();
    const { accountId, secret, worst, admitted } = await spendAll(a);
    await stop(a);

    const b = await start();
    const after = [];
    for (let i = 0; i < IN_FLIGHT; i++) after.push(outcome(await b.authz.check(check(secret))));
    expect(after.map((r) => r.httpStatus)).toEqual(Array(IN_FLIGHT).fill(402));

    // Handed over: these five and the probe's one.
    expect(await b.plane.metering.credits.openReservations?.()).toBe(IN_FLIGHT + 1);
    // The requests finish and the meter settles them at their worst case: released exactly once, balance 0.
    const ledger = b.plane.stores.ledger;
    const result = await ledger.commit({
      events: worstCaseEvents(admitted, accountId, worst),
      expired: [],
      deadLetters: [],
      now: Date.now(),
    });
    await b.plane.metering.credits.committed(result.changes);
    expect(await b.plane.metering.credits.openReservations?.()).toBe(1);
    expect((await ledger.balance(accountId)).balance).toBe(0n);
    expect(outcome(await b.authz.check(check(secret))).httpStatus).toBe(402);
  });
});

describe("a crash of the only admission process (no Redis) never grants its reserved credit twice", () => {
  const { start, stop, spendAll, clock, use } = harness();

  it("after a crash (lease not released) the successor answers 503 until the dead process's reservations expired", async () => {
    const target = use(sqliteTarget());
    const a = await start();
    const { secret } = await spendAll(a);
    const row = (await a.plane.stores.db.knex("coordination").where({ name: "lease:admission" }).first()) as Record<
      string,
      unknown
    >;
    await stop(a);
    // Simulate SIGKILL: nothing handed over, and the lease row stays behind with its last heartbeat.
    const knex = knexFactory({
      client: "better-sqlite3",
      connection: { filename: target.url.slice("sqlite:".length) },
      useNullAsDefault: true,
    });
    if (await knex.schema.hasTable("handed_over_reservations")) await knex("handed_over_reservations").delete();
    await knex("coordination").insert({ ...row, heartbeat_at: Date.now() });
    await knex.destroy();

    const b = await start();
    const refused = outcome(await b.authz.check(check(secret)));
    expect(refused.httpStatus).toBe(503);
    expect(refused.error?.code).toBe("unavailable");
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(60);
    expect(b.logs.join("")).toMatch(/did not hand over its credit reservations/);

    // A clean restart inside the fence keeps it (remembered in SQL).
    await stop(b);
    const c = await start();
    expect(outcome(await c.authz.check(check(secret))).httpStatus).toBe(503);

    // Two lease TTLs plus one reservation TTL (default 10 min) after the takeover, admission decides on the balance
    // again.
    clock.now = Date.now() + 2 * 6_000 + 600_000 + 1_000;
    expect(outcome(await c.authz.check(check(secret))).allowed).toBe(true);
  }, 20_000);

  it("the fence does not trust the dead process's clock: one that ran a minute behind is still fenced a full reservation TTL", async () => {
    const target = use(sqliteTarget());
    const a = await start();
    const { secret } = await spendAll(a);
    const row = (await a.plane.stores.db.knex("coordination").where({ name: "lease:admission" }).first()) as Record<
      string,
      unknown
    >;
    await stop(a);
    // SIGKILL of a process whose clock ran 60 s behind: its last heartbeat (just now) reads as a minute old.
    const knex = knexFactory({
      client: "better-sqlite3",
      connection: { filename: target.url.slice("sqlite:".length) },
      useNullAsDefault: true,
    });
    if (await knex.schema.hasTable("handed_over_reservations")) await knex("handed_over_reservations").delete();
    await knex("coordination").insert({ ...row, heartbeat_at: Date.now() - 60_000 });
    await knex.destroy();

    const b = await start();
    // Its requests, admitted moments ago, may run one reservation TTL more: still fenced just before then.
    clock.now = Date.now() + 600_000 - 1_000;
    expect(outcome(await b.authz.check(check(secret))).httpStatus).toBe(503);
    clock.now = Date.now() + 2 * 6_000 + 600_000 + 1_000;
    expect(outcome(await b.authz.check(check(secret))).allowed).toBe(true);
  }, 20_000);
});
