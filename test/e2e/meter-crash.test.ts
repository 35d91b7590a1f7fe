import { randomUUID } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { openStores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { alsEntry, connectAls, fileLogLine, TEST_SIGNING_SECRET, type EntryShape } from "../support/als-client.js";
import { runCli, startMeterProcess } from "../support/cli.js";
import { freePort } from "../support/ports.js";

describe("meter killed mid-stream, then reconcile from the file log", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-crash-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("ends with the ledger equal to the expected total exactly, nothing billed twice", async () => {
    const env = {
      TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "tollgate.db")}`,
      TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET,
      TOLLGATE_LOG_LEVEL: "warn",
      TOLLGATE_METER_BATCH_WINDOW_MS: "2",
    };
    const config = loadConfig({ env });
    const stores = await openStores(config);
    const accounts: string[] = [];
    const TOP_UP = 100_000_000_000n;
    for (let i = 0; i < 3; i++) {
      const account = await stores.accounts.create({ name: `crash ${i}`, planId: "pro" });
      await stores.ledger.topUp({ accountId: account.id, amount: nanos(TOP_UP), feeBps: 2500, now: Date.now() });
      accounts.push(account.id);
    }
    await stores.db.close();

    const meter = await startMeterProcess(await freePort(), env);
    const server = meter.child;

    const file = join(dir, "access.json");
    const prices = { input: 2_500_000n, cachedInput: 1_250_000n, output: 10_000_000n };
    const expected = new Map<string, bigint>(accounts.map((a) => [a, 0n]));
    const shapes: EntryShape[] = [];
    for (let i = 0; i < 900; i++) {
      const accountId = accounts[i % 3]!;
      if (i % 10 === 9) {
        shapes.push({ accountId }); // denied: counted, never billed
        continue;
      }
      const usage = { prompt: 100 + i, completion: 7 * i, cached: i % 50 };
      shapes.push({ decisionId: randomUUID(), accountId, prices, usage });
      const cost = requestCost(
        { promptTokens: usage.prompt, cachedTokens: usage.cached, completionTokens: usage.completion },
        {
          input: picoPerToken(prices.input),
          cachedInput: picoPerToken(prices.cachedInput),
          output: picoPerToken(prices.output),
        },
      );
      expected.set(accountId, expected.get(accountId)! + cost);
    }

    // Envoy writes every entry to the file log and streams it over ALS; the meter dies a third of the way in.
    const als = connectAls(meter.address);
    const streams = [als.open(), als.open()];
    let killed = false;
    for (let i = 0; i < shapes.length; i += 15) {
      const batch = shapes.slice(i, i + 15);
      for (const s of batch) appendFileSync(file, fileLogLine(s) + "\n");
      if (i >= 300 && !killed) {
        server.kill("SIGKILL");
        killed = true;
      }
      streams[(i / 15) % 2]!.send(batch.map(alsEntry));
      // Resend the previous batch too: ALS retries and reconnects deliver duplicates.
      if (i > 0) streams[(i / 15 + 1) % 2]!.send(shapes.slice(i - 15, i).map(alsEntry));
      await sleep(2);
    }
    await meter.exited;
    expect(server.signalCode).toBe("SIGKILL");
    for (const s of streams) s.cancel();
    als.close();

    const billable = shapes.filter((s) => s.decisionId).length;
    const reconcile = await runCli(["reconcile", file, "--json"], env);
    expect(reconcile.code, reconcile.stderr).toBe(0);
    const report = JSON.parse(reconcile.stdout);
    expect(report.lines).toBe(900);
    expect(report.skipped).toBe(90);
    expect(report.dead_lettered).toBe(0);
    expect(report.billed + report.already_billed).toBe(billable);
    // The meter did bill some before it died, and reconcile billed the rest.
    expect(report.already_billed).toBeGreaterThan(0);
    expect(report.billed).toBeGreaterThan(0);

    const again = JSON.parse((await runCli(["reconcile", file, "--json"], env)).stdout);
    expect(again).toMatchObject({ billed: 0, already_billed: billable, skipped: 90 });

    const check = await openStores(config);
    try {
      for (const accountId of accounts) {
        const balance = (await check.ledger.balance(accountId)).balance;
        expect(balance).toBe(TOP_UP - expected.get(accountId)!);
        expect(await check.ledger.entriesTotal(accountId)).toBe(balance);
      }
      const debits = await check.db.knex("ledger_entries").where({ kind: "usage_debit" }).count({ n: "*" }).first();
      expect(Number(debits!.n)).toBe(billable);
      const rows = await check.db.knex("usage_log").count({ n: "*" }).first();
      expect(Number(rows!.n)).toBe(billable);
    } finally {
      await check.db.close();
    }
  }, 60_000);
});
