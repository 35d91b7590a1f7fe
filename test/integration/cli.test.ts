import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { helpTopics } from "../../src/cli/help.js";
import { run } from "../../src/cli/main.js";
import type { Output } from "../../src/cli/output.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { runBuiltCli, startServe, type CliResult, type ServeProcess } from "../support/cli.js";
import { freePort } from "../support/ports.js";

const dir = mkdtempSync(join(tmpdir(), "tollgate-cli-"));
const dataDir = join(dir, "data");
let env: NodeJS.ProcessEnv = {
  ...process.env,
  TOLLGATE_DATABASE_URL: `sqlite:${join(dataDir, "cli.db")}`,
  TOLLGATE_DATA_DIR: dataDir,
  TOLLGATE_METER_SPOOL_DIR: join(dataDir, "spool"),
  TOLLGATE_REDIS_URL: "",
  TOLLGATE_ADMIN_URL: "",
  TOLLGATE_ADMIN_TOKEN: "",
  TOLLGATE_LOG_LEVEL: "warn",
};

/** Runs the built CLI against this file's server (no admin URL or token set: the local defaults). */
function tollgate(...args: string[]): Promise<CliResult> {
  return runBuiltCli(args, env);
}
const json = async (...args: string[]) => {
  const r = await tollgate(...args, "--json");
  expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
};

let server: ServeProcess | undefined;
let adminPort = 0;
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("tollgate CLI before any server runs", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    adminPort = await freePort();
    env = {
      ...env,
      TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
      TOLLGATE_AUTHZ_LISTEN: `127.0.0.1:${await freePort()}`,
      TOLLGATE_METER_LISTEN: `127.0.0.1:${await freePort()}`,
    };
  });

  it("a management command names the URL nobody answers at, and creates no database", async () => {
    const r = await tollgate("accounts", "list");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `tollgate: no admin API answers at http://127.0.0.1:${adminPort} (start it with \`npm start\` / \`tollgate serve\`, or set TOLLGATE_ADMIN_URL)\n`,
    );
    const jsonError = await tollgate("keys", "revoke", "key_x", "--json");
    expect(JSON.parse(jsonError.stderr).error.code).toBe("unavailable");
    // Read-only commands never migrate or seed: nothing was written.
    expect(existsSync(join(dataDir, "cli.db"))).toBe(false);
  });

  it("migrates directly, idempotently", async () => {
    const first = await tollgate("migrate", "--json");
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).applied.length).toBeGreaterThan(0);
    expect(JSON.parse((await tollgate("migrate", "--json")).stdout)).toEqual({ applied: [] });
    expect((await tollgate("migrate")).stdout).toBe("schema is up to date\n");
  });

  it("answers --help on every command and subcommand with exit 0", async () => {
    const topics = helpTopics();
    expect(topics.length).toBeGreaterThan(25);
    for (const [command, action] of topics) {
      let printed = "";
      const out: Output = {
        json: false,
        result: () => {},
        info: (line) => (printed += line),
        error: (line) => (printed += line),
      };
      expect(await run([...[command, action].filter(Boolean), "--help"], out), `${command} ${action} --help`).toBe(0);
      expect(printed).toContain(`tollgate ${command}${action ? ` ${action}` : ""}`);
    }
    // The issue's example, through the built CLI: it used to exit 2 with "unknown accounts command".
    const accounts = await tollgate("accounts", "--help");
    expect(accounts.code).toBe(0);
    expect(accounts.stdout).toContain("tollgate accounts create --name NAME --plan PLAN_ID");
    expect((await tollgate("--help")).code).toBe(0);
  });
});

describe("tollgate CLI against a served admin API (embedded default)", { timeout: 180_000 }, () => {
  let accountId = "";
  let keyId = "";
  let localTokenId = "";

  beforeAll(async () => {
    server = await startServe(["--no-data-plane"], env);
  });

  it("serve writes the local operator credential with mode 0600, which the CLI uses with no set-up", async () => {
    const file = join(dataDir, "admin-token");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(server!.output()).toContain(`local operator credential in ${file}`);
    const tokens = await json("admin-tokens", "list");
    // The API's shape: field names as in the proto, an unset revoked_at left out.
    expect(tokens).toEqual([
      {
        id: expect.stringMatching(/^atok_/),
        name: "local",
        kind: "operator",
        account_id: "",
        created_at: expect.any(String),
      },
    ]);
    localTokenId = tokens[0].id;
  });

  it("creates, gets and lists accounts in one JSON shape", async () => {
    const account = await json("accounts", "create", "--name", "Acme", "--plan", "pro");
    expect(account).toMatchObject({ name: "Acme", plan_id: "pro", suspended: false });
    accountId = account.id;
    const human = await tollgate("accounts", "create", "--name", "Beta", "--plan", "basic");
    expect(human.stdout).toMatch(/^created account acct_\w+ \(Beta, plan basic\)\n$/);
    expect(await json("accounts", "get", accountId)).toEqual(account);
    const list = await json("accounts", "list");
    expect(list.map((a: { name: string }) => a.name)).toEqual(["Acme", "Beta"]);
    expect(list[0]).toEqual(account);
  });

  it("creates a key whose secret is shown once; create, get, list, rotate and revoke print one key shape", async () => {
    const created = await json(
      "keys",
      "create",
      "--account",
      accountId,
      "--name",
      "prod",
      "--expires-in",
      "30d",
      "--models",
      "gpt-5.5,claude-haiku-4.5",
      "--label",
      "env=production",
    );
    expect(created.secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
    expect(created).toMatchObject({
      account_id: accountId,
      name: "prod",
      allowed_models: ["gpt-5.5", "claude-haiku-4.5"],
      labels: { env: "production" },
    });
    expect(created.display_prefix).toBe(created.secret.slice(0, 7));
    expect(Date.parse(created.expires_at) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    keyId = created.id;
    const { secret, ...key } = created;
    expect(await json("keys", "get", keyId)).toEqual(key);
    const list = await tollgate("keys", "list", "--account", accountId, "--json");
    expect(JSON.parse(list.stdout)).toEqual([key]);
    expect(list.stdout).not.toContain(secret);
    const graced = await json("keys", "rotate", keyId, "--grace", "1h");
    expect(Object.keys(graced).sort()).toEqual([...Object.keys(created), "previous_secret_expires_at"].sort());
    expect(Date.parse(graced.previous_secret_expires_at) - Date.now()).toBeGreaterThan(3_500_000);
    const revoked = await json("keys", "revoke", keyId);
    expect(revoked.revoked_at).toBeDefined();
  });

  it("gives specific errors with the right exit codes", async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [["accounts", "create", "--name", "X"], 2, /--plan is required/],
      [["accounts", "create", "--name", "X", "--plan", "gold"], 1, /plan "gold"/],
      [["keys", "create", "--account", "acct_missing"], 1, /account "acct_missing" does not exist/],
      [["keys", "create", "--account", accountId, "--expires-in", "soon"], 2, /--expires-in: "soon" is not a duration/],
      [["keys", "create", "--account", accountId, "--models", "gpt-9"], 1, /gpt-9/],
      [["keys", "create", "--account", accountId, "--label", "novalue"], 2, /--label must be key=value/],
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
    const missing = await tollgate("keys", "create", "--account", "acct_missing", "--json");
    expect(JSON.parse(missing.stderr)).toEqual({
      error: { code: "not_found", message: 'account "acct_missing" does not exist' },
    });
  });

  it("gives invalid input the same field-named error as the admin API does", async () => {
    const token = (await import("node:fs")).readFileSync(join(dataDir, "admin-token"), "utf8").trim();
    const transport = createConnectTransport({
      baseUrl: `http://127.0.0.1:${adminPort}`,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    });
    const accounts = createClient(AccountService, transport);
    const keys = createClient(KeyService, transport);
    const api = async (call: () => Promise<unknown>) => {
      try {
        await call();
      } catch (error) {
        const e = ConnectError.from(error);
        return {
          code: Code[e.code].replace(/[A-Z]/g, (m, i) => (i ? "_" : "") + m.toLowerCase()),
          message: e.rawMessage,
        };
      }
      throw new Error("the API accepted invalid input");
    };
    const cases: Array<[string[], () => Promise<unknown>]> = [
      [
        ["accounts", "create", "--name", " ", "--plan", "pro"],
        () => accounts.createAccount({ name: " ", planId: "pro" }),
      ],
      [
        ["keys", "create", "--account", accountId, "--rpm", "100000000"],
        () => keys.createKey({ accountId, requestsPerMinute: 100_000_000 }),
      ],
      [
        ["keys", "create", "--account", accountId, "--label", "Bad Key=x"],
        () => keys.createKey({ accountId, labels: { "Bad Key": "x" } }),
      ],
      [
        ["accounts", "update", accountId, "--name", "x".repeat(300)],
        () => accounts.updateAccount({ accountId, name: "x".repeat(300) }),
      ],
    ];
    for (const [args, call] of cases) {
      const expected = await api(call);
      expect(expected.code).toBe("invalid_argument");
      expect(expected.message).toMatch(/^[a-z_]+(\.[^:]+)?: /);
      const cli = await tollgate(...args, "--json");
      expect(cli.code, args.join(" ")).toBe(1);
      expect(JSON.parse(cli.stderr), args.join(" ")).toEqual({ error: expected });
    }
  });

  it("bootstraps no second operator token without a credential", async () => {
    const r = await runBuiltCli(["admin-tokens", "create", "--operator"], {
      ...env,
      TOLLGATE_DATA_DIR: join(dir, "elsewhere"),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin tokens are managed by an operator/);
  });

  it("leaves an audit record naming its actor for every mutating command", async () => {
    const ops = await json("admin-tokens", "create", "--operator", "--name", "ops");
    await json("admin-tokens", "revoke", ops.id);
    const events: Array<{ token_id: string; method: string }> = await json("audit", "--limit", "100");
    const actorOf = (method: string) => events.filter((e) => e.method.endsWith(method)).map((e) => e.token_id);
    expect(actorOf("/Migrate")).toEqual(["bootstrap"]);
    expect(actorOf("/CreateLocalAdminToken")).toEqual(["bootstrap"]);
    expect(actorOf("/CreateAccount")).toEqual([localTokenId, localTokenId]);
    for (const method of ["/CreateKey", "/RotateKey", "/RevokeKey", "/CreateAdminToken", "/RevokeAdminToken"])
      expect(actorOf(method), method).toEqual([localTokenId]);
    expect((await tollgate("audit")).stdout).toMatch(/^TIME\s+TOKEN\s+METHOD\s+TARGETS\n/);
  });

  it("stops on a bad config value naming the field", async () => {
    const { code, stderr } = await runBuiltCli(["migrate"], { ...env, TOLLGATE_DATABASE_URL: "mysql://x" });
    expect(code).toBe(1);
    expect(stderr).toContain("config: database.url:");
    expect(stderr).toContain("TOLLGATE_DATABASE_URL");
  });
});

describe("tollgate admin-tokens bootstrap", { timeout: 60_000 }, () => {
  it("creates the first operator token with no server and no schema, audited as bootstrap; the rest goes through the API", async () => {
    const fresh = join(dir, "fresh");
    const freshEnv = {
      ...env,
      TOLLGATE_DATABASE_URL: `sqlite:${join(fresh, "t.db")}`,
      TOLLGATE_DATA_DIR: fresh,
      TOLLGATE_METER_SPOOL_DIR: join(fresh, "spool"),
      TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${await freePort()}`,
      TOLLGATE_AUTHZ_LISTEN: `127.0.0.1:${await freePort()}`,
      TOLLGATE_METER_LISTEN: `127.0.0.1:${await freePort()}`,
    };
    const first = await runBuiltCli(["admin-tokens", "create", "--operator", "--name", "first", "--json"], freshEnv);
    expect(first.code, first.stderr).toBe(0);
    const token = JSON.parse(first.stdout);
    expect(token).toEqual({
      id: expect.stringMatching(/^atok_/),
      name: "first",
      kind: "operator",
      account_id: "",
      created_at: expect.any(String),
      secret: expect.stringMatching(/^tga_/),
    });
    const second = await runBuiltCli(["admin-tokens", "create", "--operator"], freshEnv);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/admin tokens are managed by an operator/);
    // With a credential, admin-tokens is an admin API client: nothing answers until a server runs.
    const withToken = { ...freshEnv, TOLLGATE_ADMIN_TOKEN: token.secret };
    expect(JSON.parse((await runBuiltCli(["admin-tokens", "list", "--json"], withToken)).stderr).error.code).toBe(
      "unavailable",
    );
    const served = await startServe(["--no-data-plane"], freshEnv);
    try {
      const listed = await runBuiltCli(["admin-tokens", "list", "--json"], withToken);
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout).map((t: { name: string }) => t.name)).toEqual(["first", "local"]);
      const events: Array<{ token_id: string; method: string; targets: Record<string, string> }> = JSON.parse(
        (await runBuiltCli(["audit", "--json"], withToken)).stdout,
      );
      expect(events.filter((e) => e.method === "tollgate.cli/CreateAdminToken")).toEqual([
        expect.objectContaining({ token_id: "bootstrap", targets: { admin_token_id: token.id, kind: "operator" } }),
      ]);
    } finally {
      await served.stop();
    }
  });
});
