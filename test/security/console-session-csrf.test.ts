import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";

/**
 * What a page on another origin (or site) can make a browser send with the console's session cookie, and what the
 * admin port makes of it: no CORS preflight is granted, simple requests (text/plain, form types, GET) are refused
 * without x-tollgate-console, and the console's assets cannot be used to read files outside them.
 */
describe("console session cookie: cross-origin requests a browser can send", () => {
  let h: AdminHarness;
  let cookie: string;
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Victim", planId: "pro" })).account!.id;
    await h.client(KeyService).createKey({ accountId, name: "k" });
    const token = await h.accountToken(accountId);
    const res = await fetch(`${h.url}/tollgate.admin.v1.ConsoleSessionService/CreateSession`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, origin: h.url },
      body: "{}",
    });
    cookie = (res.headers.get("set-cookie") ?? "").split(";")[0]!;
    expect(cookie).toMatch(/^tollgate_session=tgs_/);
  });
  afterAll(() => h?.close());

  it("a CORS preflight for the console header is not granted", async () => {
    const res = await fetch(`${h.url}/tollgate.admin.v1.KeyService/RevokeKey`, {
      method: "OPTIONS",
      headers: {
        origin: "https://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-tollgate-console",
      },
    });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.headers.get("access-control-allow-headers")).toBeNull();
    expect(res.status).toBeGreaterThanOrEqual(400);
  });

  it.each([
    ["text/plain", "{}"],
    ["application/x-www-form-urlencoded", "a=b"],
    ["multipart/form-data; boundary=x", "--x--"],
    ["application/json", "{}"],
  ])("a simple cross-site POST (%s) with the cookie is refused", async (type, body) => {
    for (const origin of [{ origin: "https://evil.example" }, {}] as Array<Record<string, string>>) {
      const res = await fetch(`${h.url}/tollgate.admin.v1.KeyService/ListKeys`, {
        method: "POST",
        headers: { "content-type": type, cookie, "sec-fetch-site": "cross-site", ...origin },
        body,
      });
      expect(res.status).toBe(403);
    }
  });

  it("a GET (Connect's GET form, a link or an image) with the cookie is refused", async () => {
    const message = encodeURIComponent("{}");
    for (const path of [
      `/tollgate.admin.v1.KeyService/ListKeys?encoding=json&message=${message}`,
      "/export/usage.csv",
      "/export/usage.jsonl",
    ]) {
      const res = await fetch(`${h.url}${path}`, { headers: { cookie, "sec-fetch-site": "cross-site" } });
      expect(res.status, path).toBe(403);
    }
  });

  it("the console's asset paths read nothing outside the built console", async () => {
    for (const path of [
      "/console/../package.json",
      "/console/..%2f..%2fpackage.json",
      "/console/%2e%2e/package.json",
      "/console/app.js.map",
      "/console/index.html/..",
    ]) {
      const res = await fetch(`${h.url}${path}`);
      const text = await res.text();
      expect(text, path).not.toContain('"name": "tollgate"');
    }
  });
});
