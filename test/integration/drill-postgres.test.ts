import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { mintSecret } from "../../src/domain/api-key.js";
import { alsEntry, connectAls, type EntryShape } from "../support/als-client.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { postgresBinDir, startPostgresInstance, type PostgresInstance } from "../support/postgres-instance.js";
import { bearer, chat } from "../contract/check/setup.js";

const CI = process.env.CI === "true" || process.env.CI === "1";
const PRICES = { input: 2_500_000n, cachedInput: 1_250_000n, output: 10_000_000n };

function costOf(u: { prompt: number; completion: number; cached: number }): bigint {
  return requestCost(
    { promptTokens: u.prompt, cachedTokens: u.cached, completionTokens: u.completion },
    {
      input: picoPerToken(PRICES.input),
      cachedInput: picoPerToken(PRICES.cachedInput),
      output: picoPerToken(PRICES.output),
    },
  );
}

// A real PostgreSQL server of our own (own port, own data dir), stopped and started under a live meter and authz:
// the machine's shared server is never touched. Without server binaries the drill skips locally and fails under CI.
const suite = postgresBinDir() || CI ? describe : describe.skip;

suite("drill: PostgreSQL stopped and restarted under a stream of access-log entries", () => {
  let pg: PostgresInstance;
  let t: TestPlane;
  const spoolDir = mkdtempSync(join(tmpdir(), "tollgate-spool-"));

  beforeAll(async () => {
    pg = await startPostgresInstance();
    t = await startTestPlane(
      { name: "postgres", url: pg.url, cleanup: async () => undefined },
      {
        roles: ["authz", "meter"],
        env: {
          TOLLGATE_METER_LISTEN: "127.0.0.1:0",
          TOLLGATE_METER_BATCH_WINDOW_MS: "2",
          TOLLGATE_METER_SPOOL_DIR: spoolDir,
        },
      },
    );
  }, 30_000);
  afterAll(async () => {
    // The plane closes first (its pool would otherwise keep retrying a server that is gone).
    await t?.close().catch(() => undefined);
    await pg?.destroy();
    rmSync(spoolDir, { recursive: true, force: true });
  });

  it("bills every entry exactly once after recovery; warm keys keep being admitted, unknown keys get 503", async () => {
    const { accountId, secret } = await t.account("pro");
    const TOP_UP = 1_000_000_000_000n; // startTestPlane's default funding, fee 0
    const meter = t.plane.metering.meter;
    // Warm the key (and the account's credit state) while the database is up.
    expect(outcome(await t.authz.check(envoyCheckRequest({ headers: bearer(secret), body: chat() }))).allowed).toBe(
      true,
    );

    const als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    const streams = [als.open(), als.open(), als.open()];
    const shapes: EntryShape[] = [];
    let expected = 0n;
    let sent = 0;
    const sendBatch = (n: number) => {
      const batch: EntryShape[] = [];
      for (let i = 0; i < n; i++) {
        const k = shapes.length;
        const usage = { prompt: 50 + (k % 97), completion: 3 * (k % 41), cached: k % 20 };
        const shape: EntryShape = { decisionId: randomUUID(), accountId, prices: PRICES, usage };
        shapes.push(shape);
        batch.push(shape);
        expected += costOf(usage);
      }
      streams[sent % 3]!.send(batch.map(alsEntry));
      // Envoy retries deliver duplicates: resend the previous batch on another stream.
      if (sent > 0) streams[(sent + 1) % 3]!.send(shapes.slice(-2 * n, -n).map(alsEntry));
      sent++;
    };

    for (let i = 0; i < 10; i++) {
      sendBatch(20);
      await sleep(5);
    }
    await meter.drain();
    const billedBefore = meter.totals.billed;
    expect(billedBefore).toBe(200);

    await pg.stop("fast");
    const spooledBefore = meter.totals.spooled;
    for (let i = 0; i < 15; i++) {
      sendBatch(20);
      await sleep(5);
      if (i === 5) {
        // Authz during the outage: a warm key is decided from caches; an unknown key is a 503, not a crash.
        const warm = outcome(await t.authz.check(envoyCheckRequest({ headers: bearer(secret), body: chat() })));
        expect(warm.allowed).toBe(true);
        const unknown = outcome(
          await t.authz.check(envoyCheckRequest({ headers: bearer(mintSecret().secret), body: chat() })),
        );
        expect(unknown.httpStatus).toBe(503);
        expect(unknown.error?.code).toBe("unavailable");
        expect(unknown.headers["retry-after"]).toBeDefined();
      }
    }
    await meter.drain();
    // Nothing was billed while the server was down; everything went to the spool.
    expect(meter.totals.billed).toBe(billedBefore);
    expect(meter.totals.spooled - spooledBefore).toBeGreaterThanOrEqual(300);
    expect(meter.spooled()).toBeGreaterThan(0);

    await pg.start();
    for (let i = 0; i < 5; i++) {
      sendBatch(20);
      await sleep(5);
    }
    await Promise.all(streams.map((s) => s.end()));
    als.close();
    for (let i = 0; i < 200 && meter.spooled() > 0; i++) await sleep(50);
    expect(meter.spooled()).toBe(0);
    await meter.drain();

    const knex = t.plane.stores.db.knex;
    const rows = (await knex("ledger_entries")
      .where({ account_id: accountId, kind: "usage_debit" })
      .select("decision_id")) as Array<{ decision_id: string }>;
    const perDecision = new Map<string, number>();
    for (const r of rows) perDecision.set(r.decision_id, (perDecision.get(r.decision_id) ?? 0) + 1);
    expect(shapes.length).toBe(600);
    expect(perDecision.size).toBe(600);
    for (const s of shapes) expect(perDecision.get(s.decisionId!)).toBe(1);
    const balance = (await t.plane.stores.ledger.balance(accountId)).balance;
    expect(balance).toBe(nanos(TOP_UP - expected));
    expect(await t.plane.stores.ledger.entriesTotal(accountId)).toBe(balance);
    expect(Number((await knex("usage_log").where({ account_id: accountId }).count({ n: "*" }).first())!.n)).toBe(600);
  }, 60_000);
});
