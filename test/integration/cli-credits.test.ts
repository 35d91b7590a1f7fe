import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/cli/main.js";
import { toJson, type Output } from "../../src/cli/output.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { fileLogLine, TEST_SIGNING_SECRET } from "../support/als-client.js";
import { sqliteTarget } from "../support/services.js";

const dir = mkdtempSync(join(tmpdir(), "tollgate-cli-credits-"));
const saved = { ...process.env };
let h: AdminHarness;

/** Runs the CLI in process with --json; returns the exit code, the parsed result and any error. */
async function tollgate(
  ...args: string[]
): Promise<{ code: number; result: unknown; error?: { code: string; message: string } }> {
  let result: unknown;
  let error: { code: string; message: string } | undefined;
  const out: Output = {
    json: true,
    result: (value) => (result = JSON.parse(toJson(value))),
    info: () => {},
    error: (_line, code, message) => (error = { code, message }),
  };
  const code = await run([...args, "--json"], out);
  return { code, result, error };
}

// The CLI's management commands are admin-API clients: this suite serves the API; reconcile runs on the database.
beforeAll(async () => {
  const target = sqliteTarget();
  h = await startAdmin(target);
  process.env.TOLLGATE_DATABASE_URL = target.url;
  process.env.TOLLGATE_SIGNING_SECRET = TEST_SIGNING_SECRET;
  process.env.TOLLGATE_ADMIN_URL = h.url;
  process.env.TOLLGATE_ADMIN_TOKEN = h.operatorToken;
  delete process.env.TOLLGATE_REDIS_URL;
});
afterAll(async () => {
  process.env = saved;
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("tollgate credits, usage and reconcile", () => {
  let accountId = "";

  it("adds credit exactly and records the 25% platform fee beside it", async () => {
    accountId = ((await tollgate("accounts", "create", "--name", "Acme", "--plan", "pro")).result as { id: string }).id;
    const added = await tollgate("credits", "add", "--account", accountId, "--amount", "12.345678901");
    expect(added.code).toBe(0);
    expect(added.result).toMatchObject({
      account_id: accountId,
      credit_nano_usd: "12345678901",
      platform_fee_nano_usd: "3086419726",
      balance_nano_usd: "12345678901",
    });
    expect((await tollgate("credits", "balance", "--account", accountId)).result).toEqual({
      account_id: accountId,
      balance_nano_usd: "12345678901",
      // Plan grants are the balance's free part; this account's plan grants none.
      free_nano_usd: "0",
    });
  });

  it.each([
    [
      "1.2345678901",
      '--amount must be a positive amount of USD with at most 9 decimals (e.g. 25 or 0.50), not "1.2345678901"',
    ],
    ["-5", '--amount must be a positive amount of USD with at most 9 decimals (e.g. 25 or 0.50), not "-5"'],
    ["1e3", '--amount must be a positive amount of USD with at most 9 decimals (e.g. 25 or 0.50), not "1e3"'],
    ["0", '--amount must be greater than zero, not "0"'],
  ])("refuses --amount %s with a specific usage error", async (amount, message) => {
    const r = await tollgate("credits", "add", "--account", accountId, `--amount=${amount}`);
    expect(r.code).toBe(2);
    expect(r.error).toEqual({ code: "usage", message });
  });

  it("refuses credit for an unknown account", async () => {
    const r = await tollgate("credits", "add", "--account", "acct_nope", "--amount", "1");
    expect(r).toMatchObject({
      code: 1,
      error: { code: "not_found", message: expect.stringContaining('account "acct_nope"') },
    });
  });

  it("reconciles a file log idempotently and reports usage by key, model, time and day", async () => {
    const file = join(dir, "access.json");
    const day1 = Date.UTC(2025, 2, 1, 10);
    const day2 = Date.UTC(2025, 2, 2, 10);
    const lines = [
      fileLogLine({
        decisionId: randomUUID(),
        accountId,
        keyId: "key_a",
        startMs: day1,
        usage: { prompt: 1000, completion: 100 },
      }),
      fileLogLine({
        decisionId: randomUUID(),
        accountId,
        keyId: "key_b",
        startMs: day2,
        usage: { prompt: 10, completion: 10, source: "estimate", complete: false },
      }),
      fileLogLine({ accountId }),
      "{not json",
    ];
    writeFileSync(file, lines.join("\n") + "\n");
    expect((await tollgate("reconcile", file)).result).toEqual({
      file,
      lines: 4,
      billed: 2,
      already_billed: 0,
      skipped: 1,
      dead_lettered: 1,
      forged: 0,
    });
    expect((await tollgate("reconcile", file)).result).toEqual({
      file,
      lines: 4,
      billed: 0,
      already_billed: 2,
      skipped: 1,
      dead_lettered: 1,
      forged: 0,
    });

    const all = (await tollgate("usage", "--account", accountId)).result as Array<Record<string, unknown>>;
    expect(all.map((r) => r.key_id)).toEqual(["key_b", "key_a"]);
    const a = (await tollgate("usage", "--account", accountId, "--key", "key_a")).result as Array<
      Record<string, unknown>
    >;
    // 1000 × 2.5 µUSD + 100 × 10 µUSD = 0.0035 USD
    expect(a).toMatchObject([
      { prompt_tokens: "1000", completion_tokens: "100", cost_nano_usd: "3500000", estimated: false },
    ]);
    expect((await tollgate("usage", "--account", accountId, "--since", "2025-03-02")).result).toHaveLength(1);
    expect((await tollgate("usage", "--account", accountId, "--until", "2025-03-02")).result).toHaveLength(1);
    expect((await tollgate("usage", "--account", accountId, "--model", "other")).result).toEqual([]);
    const daily = (await tollgate("usage", "--account", accountId, "--daily")).result as Array<Record<string, unknown>>;
    expect(daily).toMatchObject([
      { day: "2025-03-01", key_id: "key_a", requests: "1" },
      { day: "2025-03-02", key_id: "key_b", requests: "1", estimated_requests: "1" },
    ]);
    const balance = (await tollgate("credits", "balance", "--account", accountId)).result as {
      balance_nano_usd: string;
    };
    expect(BigInt(balance.balance_nano_usd)).toBe(
      12_345_678_901n - 3_500_000n - (10n * 2_500_000n + 10n * 10_000_000n) / 1000n,
    );
  });

  it("names a bad --since", async () => {
    expect((await tollgate("usage", "--account", accountId, "--since", "yesterday")).error).toEqual({
      code: "usage",
      message: '--since must be an ISO date/time or epoch milliseconds, not "yesterday"',
    });
  });
});
