// Daily quotas, concurrency and expected output through the CLI and the admin API: set, shown, validated with
// field-named errors, and an account token only narrowing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/cli/main.js";
import { toJson, type Output } from "../../src/cli/output.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { TEST_SIGNING_SECRET } from "../support/als-client.js";
import { sqliteTarget } from "../support/services.js";

const saved = { ...process.env };
let h: AdminHarness;

/** Runs the CLI in process with --json; returns the exit code, the parsed result and any error. */
async function tollgate(
  ...args: string[]
): Promise<{ code: number; result: Record<string, unknown>; error?: { code: string; message: string } }> {
  let result: Record<string, unknown> = {};
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
});

describe("tollgate keys/plans: daily quotas, concurrency, expected output", () => {
  let accountId = "";
  let keyId = "";

  it("keys update KEY --rpd N --tpd N --max-concurrency N sets them; keys get shows them; 0 returns to the plan's", async () => {
    accountId = (await tollgate("accounts", "create", "--name", "Quota Co", "--plan", "pro")).result.id as string;
    keyId = (await tollgate("keys", "create", "--account", accountId, "--name", "ci", "--rpd", "200")).result
      .id as string;
    const updated = await tollgate("keys", "update", keyId, "--rpd", "100", "--tpd", "50000", "--max-concurrency", "3");
    expect(updated.code).toBe(0);
    expect(updated.result).toMatchObject({
      requests_per_day: 100,
      tokens_per_day: "50000",
      max_concurrency: 3,
    });
    expect((await tollgate("keys", "get", keyId)).result).toMatchObject({
      requests_per_day: 100,
      tokens_per_day: "50000",
      max_concurrency: 3,
    });
    const cleared = await tollgate("keys", "update", keyId, "--max-concurrency", "0");
    expect(cleared.result.max_concurrency).toBe(0); // 0: the plan's
    expect(cleared.result.requests_per_day).toBe(100);
  });

  it("refuses values out of range with the field's name", async () => {
    const r = await tollgate("keys", "update", keyId, "--rpd", "2000000000");
    expect(r.code).not.toBe(0);
    expect(r.error?.message).toMatch(/^requests_per_day: must be at most 1000000000/);
    const usage = await tollgate("keys", "update", keyId, "--max-concurrency=-1");
    expect(usage.code).toBe(2);
    expect(usage.error?.message).toBe('--max-concurrency must be a non-negative integer, not "-1"');
  });

  it("models update --expected-output sets a model's expected output; 0 clears it; out of range names the field", async () => {
    const set = await tollgate("models", "update", "deepseek-v4-flash", "--expected-output", "500");
    expect(set.code).toBe(0);
    expect(set.result).toMatchObject({ id: "deepseek-v4-flash", expected_output_tokens: 500 });
    const listed = (await tollgate("models", "list")).result as unknown as Array<Record<string, unknown>>;
    expect(listed.find((m) => m.id === "deepseek-v4-flash")).toMatchObject({ expected_output_tokens: 500 });
    expect((await tollgate("models", "update", "deepseek-v4-flash", "--expected-output", "0")).result).toMatchObject({
      expected_output_tokens: 0,
    });
    const big = await tollgate("models", "update", "deepseek-v4-flash", "--expected-output", "200000000");
    expect(big.error?.message).toMatch(/^expected_output_tokens: must be at most/);
  });

  it("plans update sets a plan's daily quotas, concurrency and expected output; an account may only narrow them", async () => {
    const plan = await tollgate(
      "plans",
      "update",
      "pro",
      "--rpd",
      "500",
      "--max-concurrency",
      "8",
      "--expected-output",
      "700",
    );
    expect(plan.code).toBe(0);
    expect(plan.result).toMatchObject({ requests_per_day: 500, max_concurrency: 8, expected_output_tokens: 700 });
    const listed = (await tollgate("plans", "list")).result as unknown as Array<Record<string, unknown>>;
    expect(listed.find((p) => p.id === "pro")).toMatchObject({ requests_per_day: 500 });

    // An account token: at most the plan's 500 per day; the plan has no tokens-per-day quota, so any value narrows.
    process.env.TOLLGATE_ADMIN_TOKEN = await h.accountToken(accountId);
    try {
      const own = (await tollgate("keys", "create", "--account", accountId, "--name", "own")).result.id as string;
      const tooMany = await tollgate("keys", "update", own, "--rpd", "501");
      expect(tooMany.error?.message).toMatch(
        /^requests_per_day: an account may only narrow its keys: the plan allows 500/,
      );
      expect((await tollgate("keys", "update", own, "--rpd", "20", "--tpd", "9000")).result).toMatchObject({
        requests_per_day: 20,
        tokens_per_day: "9000",
      });
    } finally {
      process.env.TOLLGATE_ADMIN_TOKEN = h.operatorToken;
    }
    // An operator's value stands: an account may lower it, never raise or clear it.
    await tollgate("keys", "update", keyId, "--max-concurrency", "3");
    process.env.TOLLGATE_ADMIN_TOKEN = await h.accountToken(accountId);
    try {
      const raise = await tollgate("keys", "update", keyId, "--max-concurrency", "4");
      expect(raise.error?.message).toMatch(/^max_concurrency: an operator set this key's limit to 3/);
      const clear = await tollgate("keys", "update", keyId, "--max-concurrency", "0");
      expect(clear.error?.message).toMatch(/^max_concurrency: an operator set this key's limit to 3/);
    } finally {
      process.env.TOLLGATE_ADMIN_TOKEN = h.operatorToken;
    }
  });
});
