import { randomUUID } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { spoolFileFor } from "../../src/adapters/spool/sqlite-spool.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { alsEntry, connectAls, fileLogLine, TEST_SIGNING_SECRET, type EntryShape } from "../support/als-client.js";
import { postgresBinDir, startPostgresInstance } from "../support/postgres-instance.js";
import { freePort } from "../support/ports.js";
import { runCli, startMeterProcess, until, type MeterProcess } from "../support/cli.js";
import { pausedLine, startPausedMeterProcess } from "../support/paused-ledger.js";

const CI = process.env.CI === "true" || process.env.CI === "1";
const PRICES = { input: 2_500_000n, cachedInput: 1_250_000n, output: 10_000_000n };
const TOP_UP = 100_000_000_000n;

/** The meter as its own node process on a free port. */
async function startMeter(env: Record<string, string>): Promise<MeterProcess> {
  return startMeterProcess(await freePort(), env);
}

async function kill(meter: MeterProcess): Promise<void> {
  meter.child.kill("SIGKILL");
  await meter.exited;
  expect(meter.child.signalCode).toBe("SIGKILL");
}

/** Accounts, the entries sent so far and what each account must end up paying. */
class Workload {
  readonly shapes: EntryShape[] = [];
  readonly expected = new Map<string, bigint>();
  constructor(
    readonly accounts: string[],
    readonly file: string,
  ) {
    for (const a of accounts) this.expected.set(a, 0n);
  }
  /** n new billable entries, written to the JSON file log first (as Envoy does) and returned for ALS. */
  next(n: number): EntryShape[] {
    const out: EntryShape[] = [];
    for (let i = 0; i < n; i++) {
      const k = this.shapes.length;
      const accountId = this.accounts[k % this.accounts.length]!;
      const usage = { prompt: 100 + (k % 300), completion: 7 * (k % 90), cached: k % 50 };
      const shape: EntryShape = { decisionId: randomUUID(), accountId, prices: PRICES, usage };
      this.shapes.push(shape);
      const cost = requestCost(
        { promptTokens: usage.prompt, cachedTokens: usage.cached, completionTokens: usage.completion },
        {
          input: picoPerToken(PRICES.input),
          cachedInput: picoPerToken(PRICES.cachedInput),
          output: picoPerToken(PRICES.output),
        },
      );
      this.expected.set(accountId, this.expected.get(accountId)! + cost);
      appendFileSync(this.file, fileLogLine(shape) + "\n");
      out.push(shape);
    }
    return out;
  }
}

async function seed(stores: Stores, n: number): Promise<string[]> {
  const accounts: string[] = [];
  for (let i = 0; i < n; i++) {
    const account = await stores.accounts.create({ name: `drill ${i}`, planId: "pro" });
    await stores.ledger.topUp({ accountId: account.id, amount: nanos(TOP_UP), feeBps: 2500, now: Date.now() });
    accounts.push(account.id);
  }
  return accounts;
}

async function debits(stores: Stores): Promise<number> {
  return Number((await stores.db.knex("ledger_entries").where({ kind: "usage_debit" }).count({ n: "*" }).first())!.n);
}

/** Every decision billed exactly once, every balance equal to its top-up minus the exact expected cost. */
async function expectExact(stores: Stores, work: Workload): Promise<void> {
  const rows = (await stores.db.knex("ledger_entries").where({ kind: "usage_debit" }).select("decision_id")) as Array<{
    decision_id: string;
  }>;
  const per = new Map<string, number>();
  for (const r of rows) per.set(r.decision_id, (per.get(r.decision_id) ?? 0) + 1);
  expect(per.size).toBe(work.shapes.length);
  for (const s of work.shapes) expect(per.get(s.decisionId!), s.decisionId).toBe(1);
  for (const accountId of work.accounts) {
    const balance = (await stores.ledger.balance(accountId)).balance;
    expect(balance).toBe(TOP_UP - work.expected.get(accountId)!);
    expect(await stores.ledger.entriesTotal(accountId)).toBe(balance);
  }
}

describe("drill: SIGKILL of the meter in the middle of a ledger commit (SQLite)", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-kill-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("loses nothing and bills nothing twice after restart and reconcile of the file log", async () => {
    const env = {
      TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "tollgate.db")}`,
      TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET,
      TOLLGATE_LOG_LEVEL: "warn",
      TOLLGATE_METER_BATCH_WINDOW_MS: "2",
      TOLLGATE_METER_SPOOL_DIR: join(dir, "spool"),
    };
    const stores = await openStores(loadConfig({ env }));
    try {
      const work = new Workload(await seed(stores, 3), join(dir, "access.json"));

      // Round 0: a healthy meter bills 150 entries.
      let meter = await startMeter(env);
      let als = connectAls(meter.address);
      let stream = als.open();
      for (let i = 0; i < 5; i++) stream.send(work.next(30).map(alsEntry));
      await until("round 0 billed", async () => (await debits(stores)) === 150);
      await kill(meter);
      als.close();

      // Round 1 (and 2 with DRILL_KILLS=2): a test build of the meter whose every commit pauses inside its transaction
      // (a wrapped ledger store, test/support/paused-ledger.ts); the kill lands there.
      const kills = Number(process.env.DRILL_KILLS ?? 1);
      for (let round = 1; round <= kills; round++) {
        meter = await startPausedMeterProcess(await freePort(), env, 20_000);
        als = connectAls(meter.address);
        stream = als.open();
        stream.send(work.next(40).map(alsEntry));
        stream.send(work.shapes.slice(0, 20).map(alsEntry)); // redelivered old entries ride in the same commit
        await until(`round ${round} paused inside a commit`, () => meter.stderr().includes(pausedLine(20_000)));
        await kill(meter);
        als.close();
        // The killed transaction left nothing behind: still exactly round 0's debits, and the books balance.
        expect(await debits(stores)).toBe(150);
        for (const a of work.accounts)
          expect(await stores.ledger.entriesTotal(a)).toBe((await stores.ledger.balance(a)).balance);
      }

      // Round 3: a healthy meter again; new entries and a redelivery of round 0 (ALS never resends the killed
      // rounds' entries: Envoy does not retry them). Nothing is double-billed.
      meter = await startMeter(env);
      als = connectAls(meter.address);
      stream = als.open();
      stream.send(work.next(60).map(alsEntry));
      stream.send(work.shapes.slice(0, 150).map(alsEntry));
      await until("round 3 billed", async () => (await debits(stores)) === 210);
      meter.child.kill("SIGTERM");
      await meter.exited;
      als.close();
      // Reconcile of Envoy's JSON file log bills exactly the entries the killed commits held (40 per kill).
      const reconcile = await runCli(["reconcile", work.file, "--json"], env);
      expect(reconcile.code, reconcile.stderr).toBe(0);
      expect(JSON.parse(reconcile.stdout)).toMatchObject({
        lines: 210 + 40 * kills,
        billed: 40 * kills,
        already_billed: 210,
        dead_lettered: 0,
      });
      await expectExact(stores, work);
    } finally {
      await stores.db.close();
    }
  }, 60_000);
});

const pgSuite = postgresBinDir() || CI ? describe : describe.skip;

pgSuite("drill: SIGKILL of the meter while PostgreSQL is down (spool replayed at the next start)", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-kill-pg-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("replays the leftover spool into the ledger exactly once, with no reconcile needed", async () => {
    const pg = await startPostgresInstance();
    let stores: Stores | undefined;
    try {
      const spoolDir = join(dir, "spool");
      const env = {
        TOLLGATE_DATABASE_URL: pg.url,
        TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET,
        TOLLGATE_LOG_LEVEL: "warn",
        TOLLGATE_METER_BATCH_WINDOW_MS: "2",
        TOLLGATE_METER_SPOOL_DIR: spoolDir,
      };
      stores = await openStores(loadConfig({ env }));
      const work = new Workload(await seed(stores, 3), join(dir, "access.json"));
      const spoolFile = spoolFileFor(spoolDir, pg.url);
      const spooledEvents = () => {
        if (!existsSync(spoolFile)) return 0;
        const db = new Database(spoolFile, { readonly: true });
        try {
          const rows = db.prepare("select payload from batches").all() as Array<{ payload: string }>;
          return rows.reduce((n, r) => n + (JSON.parse(r.payload) as { events: unknown[] }).events.length, 0);
        } finally {
          db.close();
        }
      };

      let meter = await startMeter(env);
      const als = connectAls(meter.address);
      const stream = als.open();
      for (let i = 0; i < 4; i++) stream.send(work.next(25).map(alsEntry));
      await until("first 100 billed", async () => (await debits(stores!)) === 100);

      await pg.stop("fast");
      for (let i = 0; i < 8; i++) {
        stream.send(work.next(25).map(alsEntry));
        await sleep(10);
      }
      stream.send(work.shapes.slice(0, 50).map(alsEntry)); // duplicates of billed entries, spooled too
      await until("outage entries spooled", () => spooledEvents() === 250);
      await kill(meter);
      als.close();

      await pg.start();
      meter = await startMeter(env);
      await until("spool replayed", () => spooledEvents() === 0);
      await until("all billed", async () => (await debits(stores!)) === 300);
      meter.child.kill("SIGTERM");
      await meter.exited;
      await expectExact(stores, work);
      // The file log holds every entry: a reconcile now has nothing left to bill.
      const report = JSON.parse((await runCli(["reconcile", work.file, "--json"], env)).stdout);
      expect(report).toMatchObject({ lines: 300, billed: 0, already_billed: 300 });
    } finally {
      await stores?.db.close();
      await pg.destroy();
    }
  }, 60_000);
});
