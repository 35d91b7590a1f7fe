import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runBuiltCli, type CliResult } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "tollgate-cli-"));
const env = { ...process.env, TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "cli.db")}`, TOLLGATE_REDIS_URL: "" };

/** Runs the built CLI against this file's database. */
function tollgate(...args: string[]): Promise<CliResult> {
  return runBuiltCli(args, env);
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tollgate CLI (foundation commands)", { timeout: 120_000 }, () => {
  let accountId = "";
  let keyId = "";

  it("migrates, idempotently", async () => {
    const first = await tollgate("migrate", "--json");
    expect(first.code).toBe(0);
    const again = await tollgate("migrate", "--json");
    expect(JSON.parse(again.stdout)).toEqual({ applied: [] });
    expect((await tollgate("migrate")).stdout).toBe("schema is up to date\n");
  });

  it("creates and lists accounts", async () => {
    const created = await tollgate("accounts", "create", "--name", "Acme", "--plan", "pro", "--json");
    expect(created.code).toBe(0);
    const account = JSON.parse(created.stdout);
    expect(account).toMatchObject({ name: "Acme", plan: "pro" });
    accountId = account.id;
    const human = await tollgate("accounts", "create", "--name", "Beta", "--plan", "basic");
    expect(human.stdout).toMatch(/^created account acct_\w+ \(Beta, plan basic\)\n$/);
    const list = JSON.parse((await tollgate("accounts", "list", "--json")).stdout);
    expect(list.map((a: { name: string }) => a.name)).toEqual(["Acme", "Beta"]);
  });

  it("creates a key whose secret is shown once, with expiry, models and labels", async () => {
    const created = await tollgate("keys", "create", "--account", accountId, "--name", "prod", "--expires-in", "30d", "--models", "gpt-5.5,claude-haiku-4.5", "--label", "env=production", "--json");
    expect(created.code).toBe(0);
    const key = JSON.parse(created.stdout);
    expect(key.secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
    expect(key).toMatchObject({ account_id: accountId, name: "prod", models: ["gpt-5.5", "claude-haiku-4.5"], labels: { env: "production" } });
    expect(Date.parse(key.expires_at) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    keyId = key.id;
    const list = await tollgate("keys", "list", "--account", accountId, "--json");
    const keys = JSON.parse(list.stdout);
    expect(keys).toHaveLength(1);
    expect(list.stdout).not.toContain(key.secret);
    expect(keys[0].prefix).toBe(key.secret.slice(0, 7));
    const table = await tollgate("keys", "list", "--account", accountId);
    expect(table.stdout).toMatch(/^ID\s+NAME\s+PREFIX\s+LABELS\s+EXPIRES\s+REVOKED\n/);
    expect(table.stdout).toContain("env=production");
  });

  it("rotates with and without grace and revokes", async () => {
    const graced = JSON.parse((await tollgate("keys", "rotate", keyId, "--grace", "1h", "--json")).stdout);
    expect(graced.id).toBe(keyId);
    expect(Date.parse(graced.previous_secret_valid_until) - Date.now()).toBeGreaterThan(3_500_000);
    const now = JSON.parse((await tollgate("keys", "rotate", keyId, "--json")).stdout);
    expect(now.previous_secret_valid_until).toBeNull();
    expect(now.secret).not.toBe(graced.secret);
    const revoked = JSON.parse((await tollgate("keys", "revoke", keyId, "--json")).stdout);
    expect(revoked.revoked_at).not.toBeNull();
  });

  it("gives specific errors with the right exit codes", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [["accounts", "create", "--name", "X"], 2, /--plan is required/],
      [["accounts", "create", "--name", "X", "--plan", "gold"], 1, /plan "gold" does not exist/],
      [["keys", "create", "--account", "acct_missing"], 1, /account "acct_missing" does not exist/],
      [["keys", "create", "--account", accountId, "--expires-in", "soon"], 2, /--expires-in: "soon" is not a duration/],
      [["keys", "create", "--account", accountId, "--models", "gpt-9"], 1, /model "gpt-9" is not in the catalogue/],
      [["keys", "create", "--account", accountId, "--label", "novalue"], 2, /--label must be key=value/],
      [["keys", "rotate", keyId], 1, /is revoked and cannot be rotated/],
      [["keys", "revoke"], 2, /KEY_ID is required/],
      [["keys", "list", "--account", accountId, "--bogus"], 2, /Unknown option '--bogus'/],
      [["keys", "frobnicate"], 2, /unknown keys command "frobnicate"/],
      [["launch"], 2, /unknown command "launch"/],
    ];
    const results = await Promise.all(cases.map(([args]) => tollgate(...args)));
    cases.forEach(([args, code, message], i) => {
      expect(results[i]!.code, args.join(" ")).toBe(code);
      expect(results[i]!.stderr, args.join(" ")).toMatch(message);
    });
    const json = await tollgate("keys", "create", "--account", "acct_missing", "--json");
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: "not_found", message: 'account "acct_missing" does not exist' } });
  });

  it("stops on a bad config value naming the field", async () => {
    const { code, stderr } = await runBuiltCli(["migrate"], { ...env, TOLLGATE_DATABASE_URL: "mysql://x" });
    expect(code).toBe(1);
    expect(stderr).toContain("config: database.url:");
    expect(stderr).toContain("TOLLGATE_DATABASE_URL");
  });
});
