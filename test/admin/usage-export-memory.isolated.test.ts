import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { ExportFormat, UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";
import { insertUsage } from "./usage-rows.js";

const ROWS = 100_000;

/** Samples heapUsed while `fn` runs; returns the peak growth over the starting heap, in MiB. */
async function peakHeapGrowth(fn: () => Promise<void>): Promise<{ peakMiB: number; rssPeakMiB: number }> {
  global.gc?.();
  const base = process.memoryUsage();
  let peak = 0;
  let rss = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.heapUsed - base.heapUsed);
    rss = Math.max(rss, m.rss);
  };
  const timer = setInterval(sample, 5);
  try {
    await fn();
  } finally {
    clearInterval(timer);
    sample();
  }
  return { peakMiB: peak / 2 ** 20, rssPeakMiB: rss / 2 ** 20 };
}

describe("usage export of 100,000 rows", { timeout: 240_000 }, () => {
  let h: AdminHarness;
  let accountId = "";
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Big", planId: "pro" })).account!.id;
    const keyId = (await h.client(KeyService).createKey({ accountId })).key!.id;
    await insertUsage(h.t.plane.stores.db.knex, { accountId, keyId, rows: ROWS, start: Date.UTC(2025, 0, 1) });
  }, 240_000);
  afterAll(() => h?.close());

  it("streams CSV over HTTP in constant memory (server and client in this process)", async () => {
    let bytes = 0;
    let lines = 0;
    const { peakMiB, rssPeakMiB } = await peakHeapGrowth(async () => {
      const res = await fetch(`${h.url}/export/usage.csv?account_id=${accountId}`, {
        headers: { authorization: `Bearer ${h.operatorToken}` },
      });
      expect(res.status).toBe(200);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.length;
        for (const b of chunk) if (b === 10) lines++;
      }
    });
    console.log(
      `usage export (HTTP CSV): ${ROWS} rows, ${(bytes / 2 ** 20).toFixed(1)} MiB streamed, peak heap growth ${peakMiB.toFixed(1)} MiB, peak RSS ${rssPeakMiB.toFixed(0)} MiB`,
    );
    expect(lines).toBe(ROWS + 1);
    // Buffering the export would hold it whole as a JS string (2 bytes a character: twice its size) plus 100k row
    // objects; streaming holds one page of 1,000 rows at a time. The margin absorbs GC timing under parallel suites.
    expect(bytes / 2 ** 20).toBeGreaterThan(12);
    expect(peakMiB).toBeLessThan((2 * bytes) / 2 ** 20);
  });

  it("streams JSON Lines over the server-streaming RPC in constant memory", async () => {
    let bytes = 0;
    let lines = 0;
    const { peakMiB } = await peakHeapGrowth(async () => {
      for await (const { chunk } of h
        .client(UsageService)
        .exportUsage({ filter: { accountId }, format: ExportFormat.JSONL })) {
        bytes += chunk.length;
        for (const b of chunk) if (b === 10) lines++;
      }
    });
    console.log(
      `usage export (RPC JSONL): ${ROWS} rows, ${(bytes / 2 ** 20).toFixed(1)} MiB streamed, peak heap growth ${peakMiB.toFixed(1)} MiB`,
    );
    expect(lines).toBe(ROWS);
    expect(peakMiB).toBeLessThan(bytes / 2 ** 20);
  });
});
