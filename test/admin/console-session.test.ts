import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AdminTokenService } from "../../src/gen/tollgate/admin/v1/admin_tokens_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { describeWith, postgresTarget, type StoreTarget, sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";
import { ensureConsoleBuilt } from "../console/console-stack.js";
import { insertUsage } from "./usage-rows.js";

/**
 * The web console's session: an admin token exchanged for an HttpOnly, SameSite=Strict cookie that the admin API
 * accepts where it accepts a bearer token, with that token's scope, only from the console's own origin.
 */
function consoleSessions(target: () => StoreTarget): void {
  let h: AdminHarness;
  let now = Date.now();
  let mine: { accountId: string; keyId: string; token: string };
  let theirs: { accountId: string; keyId: string };

  /** A Connect JSON call to `path` ("Service/Method") with the given headers. */
  const call = (path: string, headers: Record<string, string>, body: unknown = {}) =>
    fetch(`${h.url}/tollgate.admin.v1.${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  /** The headers the console's browser sends with a session cookie. */
  const fromConsole = (cookie: string) => ({ cookie, "x-tollgate-console": "1", origin: h.url });
  /** Signs in with `token`; returns the cookie pair ("tollgate_session=…") and the Set-Cookie header. */
  async function signIn(token: string): Promise<{ cookie: string; setCookie: string; body: string }> {
    const res = await call("ConsoleSessionService/CreateSession", { authorization: `Bearer ${token}`, origin: h.url });
    expect(res.status).toBe(200);
    const setCookie = res.headers.get("set-cookie") ?? "";
    return { cookie: setCookie.split(";")[0]!, setCookie, body: await res.text() };
  }

  beforeAll(async () => {
    ensureConsoleBuilt();
    h = await startAdmin(target(), { clock: () => now });
    const op = h.client(AccountService);
    const keys = h.client(KeyService);
    const a = (await op.createAccount({ name: "Mine", planId: "pro" })).account!.id;
    const b = (await op.createAccount({ name: "Theirs", planId: "pro" })).account!.id;
    const ka = (await keys.createKey({ accountId: a, name: "mine" })).key!.id;
    const kb = (await keys.createKey({ accountId: b, name: "theirs" })).key!.id;
    await insertUsage(h.t.plane.stores.db.knex, { accountId: a, keyId: ka, rows: 2, start: Date.UTC(2026, 0, 1) });
    await insertUsage(h.t.plane.stores.db.knex, { accountId: b, keyId: kb, rows: 2, start: Date.UTC(2026, 0, 1) });
    mine = { accountId: a, keyId: ka, token: await h.accountToken(a) };
    theirs = { accountId: b, keyId: kb };
  });
  afterAll(() => h?.close());

  it("sign-in answers with an HttpOnly, SameSite=Strict session cookie and never puts the secret in the body", async () => {
    const { cookie, setCookie, body } = await signIn(mine.token);
    expect(cookie).toMatch(/^tollgate_session=tgs_[0-9A-Za-z]{40}$/);
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    expect(setCookie).toMatch(/; Path=\//);
    expect(setCookie).toMatch(/; Max-Age=3600/);
    expect(body).not.toContain(cookie.split("=")[1]);
    expect(JSON.parse(body).session).toMatchObject({ kind: "account", accountId: mine.accountId });
  });

  it("a session reaches exactly what its token reaches: its own keys, and no other account's", async () => {
    const { cookie } = await signIn(mine.token);
    const own = await call("KeyService/ListKeys", fromConsole(cookie));
    expect(own.status).toBe(200);
    expect(((await own.json()) as { keys: Array<{ id: string }> }).keys.map((k) => k.id)).toEqual([mine.keyId]);
    const foreign = await call("KeyService/ListKeys", fromConsole(cookie), { accountId: theirs.accountId });
    expect(foreign.status).toBe(403);
    const foreignKey = await call("KeyService/GetKey", fromConsole(cookie), { keyId: theirs.keyId });
    expect(foreignKey.status).toBe(404);
    expect(await foreignKey.text()).not.toContain("theirs");
    const operatorOnly = await call("AuditService/ListAuditEvents", fromConsole(cookie));
    expect(operatorOnly.status).toBe(403);
    const exported = await fetch(`${h.url}/export/usage.csv`, { headers: fromConsole(cookie) });
    expect(exported.status).toBe(200);
    const csv = await exported.text();
    expect(csv).toContain(mine.keyId);
    expect(csv).not.toContain(theirs.keyId);
    const foreignExport = await fetch(`${h.url}/export/usage.csv?account_id=${theirs.accountId}`, {
      headers: fromConsole(cookie),
    });
    expect(foreignExport.status).toBe(403);
  });

  it("a cookie-authenticated call without the console header, or from another origin, is refused (CSRF)", async () => {
    const { cookie } = await signIn(mine.token);
    const bare = await call("KeyService/ListKeys", { cookie });
    expect(bare.status).toBe(403);
    expect(await bare.text()).toContain("x-tollgate-console");
    const foreignOrigin = await call("KeyService/ListKeys", { ...fromConsole(cookie), origin: "https://evil.example" });
    expect(foreignOrigin.status).toBe(403);
    const crossSite = await call("KeyService/ListKeys", { ...fromConsole(cookie), "sec-fetch-site": "cross-site" });
    expect(crossSite.status).toBe(403);
    const nullOrigin = await call("KeyService/ListKeys", { ...fromConsole(cookie), origin: "null" });
    expect(nullOrigin.status).toBe(403);
    const exportBare = await fetch(`${h.url}/export/usage.csv`, { headers: { cookie } });
    expect(exportBare.status).toBe(403);
    // The console's own calls pass.
    expect(
      (await call("KeyService/ListKeys", { ...fromConsole(cookie), "sec-fetch-site": "same-origin" })).status,
    ).toBe(200);
  });

  it("a session cannot mint another session (sessions end)", async () => {
    const { cookie } = await signIn(mine.token);
    const again = await call("ConsoleSessionService/CreateSession", fromConsole(cookie));
    expect(again.status).toBe(403);
    expect(again.headers.get("set-cookie")).toBeNull();
  });

  it("sign-out revokes the session and clears the cookie", async () => {
    const { cookie } = await signIn(mine.token);
    const out = await call("ConsoleSessionService/DeleteSession", fromConsole(cookie));
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toMatch(/^tollgate_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict/);
    const after = await call("KeyService/ListKeys", fromConsole(cookie));
    expect(after.status).toBe(401);
  });

  it("revoking the token, or suspending its account, ends its sessions at once", async () => {
    const token = await h.accountToken(mine.accountId);
    const { cookie } = await signIn(token);
    expect((await call("KeyService/ListKeys", fromConsole(cookie))).status).toBe(200);
    const tokens = await h.client(AdminTokenService).listAdminTokens({});
    const tokenId = tokens.tokens.at(-1)!.id;
    await h.client(AdminTokenService).revokeAdminToken({ tokenId });
    expect((await call("KeyService/ListKeys", fromConsole(cookie))).status).toBe(401);

    const other = await signIn(mine.token);
    await h.client(AccountService).updateAccount({ accountId: mine.accountId, suspended: true });
    expect((await call("KeyService/ListKeys", fromConsole(other.cookie))).status).toBe(403);
    await h.client(AccountService).updateAccount({ accountId: mine.accountId, suspended: false });
    expect((await call("KeyService/ListKeys", fromConsole(other.cookie))).status).toBe(200);
  });

  it("a session ends by itself after admin.console_session_ttl_ms (1 h)", async () => {
    const { cookie } = await signIn(mine.token);
    now += 59 * 60_000;
    expect((await call("KeyService/ListKeys", fromConsole(cookie))).status).toBe(200);
    now += 61_000;
    expect((await call("KeyService/ListKeys", fromConsole(cookie))).status).toBe(401);
  });

  it("an operator's session is an operator, recorded in the audit log as its token", async () => {
    const { cookie } = await signIn(h.operatorToken);
    const accounts = await call("AccountService/ListAccounts", fromConsole(cookie));
    expect(accounts.status).toBe(200);
    expect(((await accounts.json()) as { accounts: unknown[] }).accounts).toHaveLength(2);
    const events = (await h.client(AuditService).listAuditEvents({})).events;
    const operatorId = (await h.client(AdminTokenService).listAdminTokens({})).tokens.find(
      (t) => t.name === "test operator",
    )!.id;
    const signIns = events.filter((e) => e.method === "tollgate.admin.v1.ConsoleSessionService/CreateSession");
    expect(signIns.map((e) => e.tokenId)).toContain(operatorId);
    expect(JSON.stringify(events.map((e) => e.targets))).not.toContain(cookie.split("=")[1]);
  });

  it("the console page is served without a token, with a strict Content-Security-Policy and no inline script", async () => {
    const page = await fetch(`${h.url}/console`);
    expect(page.status).toBe(200);
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style/);
    expect(html).not.toMatch(/https?:\/\//);
  });
}

describe("console sessions (SQLite)", () => consoleSessions(sqliteTarget));
describeWith("postgres", "console sessions (PostgreSQL)", (url) => consoleSessions(() => postgresTarget(url)));
