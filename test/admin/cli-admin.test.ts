import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBuiltCli } from "../support/cli.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";
import { insertUsage } from "./usage-rows.js";

/** Every admin command of the built CLI, through the admin API (TOLLGATE_ADMIN_URL with TOLLGATE_ADMIN_TOKEN). */
describe("tollgate CLI over the admin API", { timeout: 180_000 }, () => {
  let h: AdminHarness;
  let target: StoreTarget;
  let env: NodeJS.ProcessEnv;
  let actorId = "";
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => runBuiltCli(args, { ...env, ...extra });
  const ok = async (...args: string[]) => {
    const r = await cli(args);
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const okJson = async (...args: string[]) => JSON.parse(await ok(...args, "--json"));

  beforeAll(async () => {
    target = sqliteTarget();
    // cleanup is the harness's; the CLI opens the same SQLite file.
    h = await startAdmin({ ...target, cleanup: target.cleanup });
    env = {
      ...process.env,
      TOLLGATE_DATABASE_URL: target.url,
      TOLLGATE_REDIS_URL: "",
      TOLLGATE_ADMIN_URL: "",
      TOLLGATE_ADMIN_TOKEN: "",
    };
    const created = JSON.parse(
      (
        await cli(["admin-tokens", "create", "--operator", "--name", "ci", "--json"], {
          TOLLGATE_ADMIN_URL: h.url,
          TOLLGATE_ADMIN_TOKEN: h.operatorToken,
        })
      ).stdout,
    );
    expect(created.secret).toMatch(/^tga_[0-9A-Za-z]{40}$/);
    env = { ...env, TOLLGATE_ADMIN_URL: h.url, TOLLGATE_ADMIN_TOKEN: created.secret };
    actorId = created.id;
  });
  afterAll(() => h?.close());

  it("admin-tokens: create (operator / account), list, revoke; a revoked token is refused", async () => {
    const account = await okJson("accounts", "create", "--name", "Tok", "--plan", "pro");
    const human = await ok("admin-tokens", "create", "--account", account.id);
    const token = /\n {2}(tga_\w+)\n/.exec(human)![1]!;
    const list = await okJson("admin-tokens", "list");
    expect(list.map((t: { kind: string }) => t.kind)).toEqual(["operator", "operator", "account"]);
    expect(JSON.stringify(list)).not.toContain(token);
    expect((await cli(["keys", "list", "--json"], { TOLLGATE_ADMIN_TOKEN: token })).code).toBe(0);
    expect(list[2]).toEqual({
      id: expect.stringMatching(/^atok_/),
      name: "",
      kind: "account",
      account_id: account.id,
      created_at: expect.any(String),
    });
    const id = list[2].id;
    expect((await okJson("admin-tokens", "revoke", id)).revoked_at).toEqual(expect.any(String));
    const refused = await cli(["keys", "list", "--json"], { TOLLGATE_ADMIN_TOKEN: token });
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stderr)).toEqual({
      error: { code: "unauthenticated", message: "admin token is unknown or revoked" },
    });
    expect((await cli(["admin-tokens", "create"])).stderr).toMatch(/exactly one of --operator or --account/);
  });

  it("admin-tokens goes through the admin API, not the CLI's database, and the API refuses an account token", async () => {
    // A database the CLI could open but the server does not use: the tokens listed are the server's.
    const elsewhere = { TOLLGATE_DATABASE_URL: `sqlite:${target.url.slice("sqlite:".length)}.elsewhere` };
    const list = JSON.parse((await cli(["admin-tokens", "list", "--json"], elsewhere)).stdout);
    expect(list.map((t: { id: string }) => t.id)).toContain(actorId);
    const created = JSON.parse(
      (await cli(["admin-tokens", "create", "--operator", "--name", "api", "--json"], elsewhere)).stdout,
    );
    expect(created).toMatchObject({ kind: "operator", name: "api", secret: expect.stringMatching(/^tga_/) });
    expect((await okJson("admin-tokens", "revoke", created.id)).revoked_at).toEqual(expect.any(String));
    expect(existsSync(elsewhere.TOLLGATE_DATABASE_URL.slice("sqlite:".length))).toBe(false);
    const account = await okJson("accounts", "create", "--name", "Tok2", "--plan", "pro");
    const accountToken = (await okJson("admin-tokens", "create", "--account", account.id)).secret;
    const refused = await cli(["admin-tokens", "list", "--json"], { TOLLGATE_ADMIN_TOKEN: accountToken });
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stderr).error.code).toBe("permission_denied");
  });

  it("accounts, keys, credits, usage and audit", async () => {
    const account = await okJson("accounts", "create", "--name", "Acme", "--plan", "pro");
    expect(await ok("accounts", "list")).toMatch(/^ID\s+NAME\s+PLAN\s+SUSPENDED\n/);
    expect((await okJson("accounts", "get", account.id)).name).toBe("Acme");
    expect((await okJson("accounts", "update", account.id, "--name", "Acme Inc", "--suspend")).suspended).toBe(true);
    await ok("accounts", "update", account.id, "--resume");

    const key = await okJson(
      "keys",
      "create",
      "--account",
      account.id,
      "--name",
      "prod",
      "--models",
      "gpt-5.5",
      "--label",
      "env=prod",
      "--rpm",
      "20",
      "--expires-in",
      "30d",
    );
    expect(key.secret).toMatch(/^tg_/);
    expect(key).toMatchObject({
      account_id: account.id,
      allowed_models: ["gpt-5.5"],
      requests_per_minute: 20,
      labels: { env: "prod" },
    });
    const table = await ok("keys", "list", "--account", account.id);
    expect(table).toMatch(
      /^ID\s+NAME\s+PREFIX\s+LABELS\s+MODELS\s+RPM\s+TPM\s+RPD\s+TPD\s+CONCURRENCY\s+BUDGET\s+LAST_USED\s+REVOKED\n/,
    );
    expect(table).not.toContain(key.secret);
    expect((await okJson("keys", "update", key.id, "--tpm", "9000", "--all-models")).allowed_models).toEqual([]);
    expect((await okJson("keys", "get", key.id)).tokens_per_minute).toBe("9000");
    const rotated = await okJson("keys", "rotate", key.id, "--grace", "1h");
    expect(rotated.previous_secret_expires_at).not.toBeNull();
    expect(await ok("keys", "revoke", key.id)).toBe(`revoked key ${key.id}\n`);

    const topUp = await okJson(
      "credits",
      "add",
      "--account",
      account.id,
      "--amount",
      "10",
      "--idempotency-key",
      "inv-7",
    );
    expect(topUp).toMatchObject({
      credit_nano_usd: "10000000000",
      platform_fee_nano_usd: "2500000000",
      charged_nano_usd: "12500000000",
      replayed: false,
    });
    expect(await ok("credits", "add", "--account", account.id, "--amount", "10", "--idempotency-key", "inv-7")).toMatch(
      /balance 10 USD \(replayed/,
    );
    expect(await ok("credits", "balance", "--account", account.id)).toBe(`${account.id}: 10 USD\n`);
    expect(await ok("credits", "ledger", "--account", account.id)).toMatch(/platform_fee\s+2\.5\s/);

    await insertUsage(h.t.plane.stores.db.knex, {
      accountId: account.id,
      keyId: key.id,
      rows: 30,
      start: Date.UTC(2026, 1, 1, 23, 50),
    });
    expect(await okJson("usage", "--account", account.id, "--limit", "5")).toHaveLength(5);
    const summary = await okJson("usage", "summary", "--account", account.id, "--group-by", "day");
    expect(summary.map((a: { day: string; requests: string }) => [a.day, a.requests])).toEqual([
      ["2026-02-01", "10"],
      ["2026-02-02", "20"],
    ]);
    expect(await ok("usage", "--account", account.id, "--daily")).toMatch(/^DAY\s+KEY\s+MODEL\s+REQUESTS/);
    const csv = await ok("usage", "export", "--account", account.id);
    expect(csv.split("\n")[0]).toMatch(/^time,decision_id,request_id,account_id,key_id,model/);
    expect(csv.trimEnd().split("\n")).toHaveLength(31);
    const jsonl = await ok("usage", "export", "--account", account.id, "--format", "jsonl");
    expect(JSON.parse(jsonl.split("\n")[0]!).cost_nano_usd).toBe("1234");

    const audit = await okJson("audit", "--limit", "50");
    expect(audit.map((e: { method: string }) => e.method.split("/")[1])).toEqual(
      expect.arrayContaining([
        "CreateAccount",
        "UpdateAccount",
        "CreateKey",
        "UpdateKey",
        "RotateKey",
        "RevokeKey",
        "TopUp",
      ]),
    );
    // Every change the CLI made through the API is recorded with the CLI's token as its actor.
    const apiEvents = audit.filter((e: { method: string }) => e.method.startsWith("tollgate.admin.v1."));
    expect(apiEvents.length).toBeGreaterThan(8);
    expect(apiEvents.map((e: { method: string }) => e.method)).toEqual(
      expect.arrayContaining([
        "tollgate.admin.v1.AdminTokenService/CreateAdminToken",
        "tollgate.admin.v1.AdminTokenService/RevokeAdminToken",
      ]),
    );
    // The CLI token itself was issued through the API by the harness's operator token; everything else is the CLI's.
    const issuedCli = (e: { method: string; targets: Record<string, string> }) =>
      e.method.endsWith("/CreateAdminToken") && e.targets.admin_token_id === actorId;
    expect(apiEvents.filter(issuedCli)).toHaveLength(1);
    expect(
      new Set(
        apiEvents
          .filter((e: { method: string; targets: Record<string, string> }) => !issuedCli(e))
          .map((e: { token_id: string }) => e.token_id),
      ),
    ).toEqual(new Set([actorId]));
    expect(await ok("audit")).toMatch(/^TIME\s+TOKEN\s+METHOD\s+TARGETS\n/);
  });

  it("plans and models (prices in USD per million tokens, exact)", async () => {
    await ok("plans", "create", "team", "--name", "Team", "--rpm", "100", "--tpm", "100000", "--tiers", "basic");
    expect(
      (await okJson("plans", "update", "team", "--rpm", "150", "--tiers", "basic,premium")).requests_per_minute,
    ).toBe(150);
    expect(await ok("plans", "list")).toMatch(
      /team\s+Team\s+150\s+100000\s+-\s+-\s+-\s+\(default\)\s+0\s+0\s+basic,premium/,
    );
    expect((await okJson("plans", "retire", "team")).retired).toBe(true);
    await ok(
      "models",
      "create",
      "tiny-2",
      "--provider",
      "openai",
      "--tier",
      "basic",
      "--input",
      "0.15",
      "--output",
      "0.6",
      "--context-window",
      "8000",
      "--max-output",
      "1000",
    );
    const updated = await okJson("models", "update", "tiny-2", "--output", "0.75");
    expect(updated.prices).toEqual({
      input_pico_usd_per_token: "150000",
      cached_input_pico_usd_per_token: "150000",
      output_pico_usd_per_token: "750000",
    });
    expect(await ok("models", "list")).toMatch(/tiny-2\s+openai\s+basic\s+0\.15\s+0\.15\s+0\.75/);
    expect((await okJson("models", "retire", "tiny-2")).retired).toBe(true);
    expect(h.t.plane.snapshot().models.get("tiny-2")?.retired).toBe(true);
  });

  it("reports API errors with their codes, and a missing or unreachable admin API by name", async () => {
    const bad = await cli(["accounts", "create", "--name", " ", "--plan", "pro", "--json"]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stderr)).toEqual({ error: { code: "invalid_argument", message: "name: must not be empty" } });
    const missing = await cli(["keys", "get", "key_nope"]);
    expect(missing.stderr).toBe('tollgate: key "key_nope" does not exist\n');
    const noToken = await cli(["plans", "list"], {
      TOLLGATE_ADMIN_TOKEN: "",
      TOLLGATE_DATA_DIR: target.url.slice("sqlite:".length) + ".none",
    });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(
      /^tollgate: no admin credential: set TOLLGATE_ADMIN_TOKEN, or run `tollgate serve` on this machine/,
    );
    const gone = await cli(["plans", "list"], { TOLLGATE_ADMIN_URL: "http://127.0.0.1:9" });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe(
      "tollgate: no admin API answers at http://127.0.0.1:9 (start it with `npm start` / `tollgate serve`, or set TOLLGATE_ADMIN_URL)\n",
    );
  });
});
