import { spawn, type ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { freePort } from "../support/ports.js";
import { sqliteTarget } from "../support/services.js";

const BODY = JSON.stringify({ model: "gpt-5.5", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
const check = (secret: string) =>
  envoyCheckRequest({ headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body: BODY });

async function startRedis(port: number): Promise<ChildProcess> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (chunk) => {
      seen += String(chunk);
      if (seen.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${seen}`)));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(condition()).toBe(true);
}

/**
 * redis.fail_open trades limits for availability while Redis is AWAY. It must never admit unreserved while Redis is
 * connected but its dataset is unverified (after a restart or failover, or with INFO denied by ACL): that is exactly
 * when reservations may have been lost and the data-loss fence exists.
 */
describe("Redis fail_open never admits on an unverified dataset; a Redis that denies INFO fails start-up", () => {
  let port: number;
  let server: ChildProcess;
  let admin: Redis;
  const planes: TestPlane[] = [];

  beforeEach(async () => {
    port = await freePort();
    server = await startRedis(port);
    admin = new Redis(port);
  });
  afterEach(async () => {
    for (const p of planes.splice(0).reverse()) await p.close();
    admin.disconnect();
    await stop(server);
  });

  const start = async (url: string, env: Record<string, string> = {}) => {
    const t = await startTestPlane(sqliteTarget(), { env: { TOLLGATE_REDIS_URL: url, ...env } });
    planes.push(t);
    return t;
  };

  it("with fail_open, a reconnect whose attach script is refused answers 503, never an unreserved admission", async () => {
    const t = await start(`redis://127.0.0.1:${port}`, { TOLLGATE_REDIS_FAIL_OPEN: "true" });
    const { secret } = await t.account("pro");
    expect(outcome(await t.authz.check(check(secret))).allowed).toBe(true);

    // INFO is taken away (a hardened ACL) and the connection drops: the reconnect cannot be verified.
    await admin.call("ACL", "SETUSER", "default", "-info");
    await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
    const redis = t.plane.rateLimiting.redis!;
    await until(() => redis.status !== "ready");
    await until(() => redis.status === "ready");

    for (let i = 0; i < 3; i++) {
      const r = outcome(await t.authz.check(check(secret)));
      expect(r.allowed).toBe(false);
      expect(r.httpStatus).toBe(503);
      expect(r.error?.code).toBe("unavailable");
    }
    // The operator is told what to grant, at error level.
    await until(() => t.logs.some((l) => l.includes('"level":50') && l.includes("+info")));
  });

  it("with fail_open, Redis being unreachable still admits (the operator's availability choice)", async () => {
    const t = await start(`redis://127.0.0.1:${port}`, { TOLLGATE_REDIS_FAIL_OPEN: "true" });
    const { secret } = await t.account("pro");
    expect(outcome(await t.authz.check(check(secret))).allowed).toBe(true);
    await stop(server);
    await until(() => t.plane.rateLimiting.redis!.status !== "ready");
    expect(outcome(await t.authz.check(check(secret))).allowed).toBe(true);
    server = await startRedis(port);
  });

  it("start-up fails, naming the +info grant, when Tollgate's Redis user may not run INFO", async () => {
    await admin.call("ACL", "SETUSER", "tg", "on", ">pw", "~*", "&*", "+@all", "-info");
    await expect(start(`redis://tg:pw@127.0.0.1:${port}`)).rejects.toThrow(/\+info/);
  });
});
