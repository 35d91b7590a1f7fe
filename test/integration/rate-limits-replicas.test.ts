import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";
import { createRedisKeyEvents } from "../../src/adapters/redis/invalidation.js";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import { connectAuthz, outcome, type AuthzClient } from "../support/authz-client.js";
import { describeWith, sqliteTarget, type StoreTarget } from "../support/services.js";
import { chatCheck } from "../support/rate-limits.js";

interface Replica {
  child: ChildProcess;
  client: AuthzClient;
  output: string[];
}

const CLI = join(PACKAGE_ROOT, "src/cli/main.ts");

/** Starts `tollgate serve --role authz` as its own process (run from source through tsx) and waits for its port. */
async function startReplica(env: Record<string, string>): Promise<Replica> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve", "--role", "authz"], {
    cwd: PACKAGE_ROOT,
    // A credential for the test model's provider (not --mock-providers, which also starts a mock server on one port).
    env: { ...process.env, ...env, TOLLGATE_AUTHZ_LISTEN: "127.0.0.1:0", TOLLGATE_LOG_LEVEL: "info", TOLLGATE_PROVIDER_ANTHROPIC_API_KEY: "test-anthropic" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start:\n${output.join("")}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output.push(String(chunk));
      const match = /"port":(\d+)[^\n]*"msg":"authz listening"/.exec(output.join(""));
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => output.push(String(chunk)));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited (${code}):\n${output.join("")}`));
    });
  });
  return { child, client: connectAuthz(`127.0.0.1:${port}`), output };
}

async function stopReplica(replica: Replica): Promise<void> {
  replica.client.close();
  if (replica.child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    replica.child.once("exit", () => resolve());
    replica.child.kill("SIGTERM");
  });
}

describeWith("redis", "rate limits across three authz replicas sharing Redis", (redisUrl) => {
  const prefix = `test_rep_${process.pid}_${randomUUID().slice(0, 8)}`;
  let target: StoreTarget;
  let stores: Stores;
  let replicas: Replica[] = [];
  const publisher = createRedisClient(redisUrl);
  const env = () => ({
    TOLLGATE_DATABASE_URL: target.url,
    TOLLGATE_REDIS_URL: redisUrl,
    TOLLGATE_REDIS_PREFIX: prefix,
    // Only pub/sub can propagate a revocation within the test's second: the poll is pushed out to a minute.
    TOLLGATE_KEYS_POLL_INTERVAL_MS: "60000",
    // Three replicas, the test process and parallel suites share a small CI box: a 600-Check burst lags each event
    // loop past the production 900 ms Redis deadline (the timer fires before the waiting reply is read), which would
    // turn correct decisions into 503s. This test is about exactness, so it allows for the lag.
    TOLLGATE_REDIS_COMMAND_TIMEOUT_MS: "10000",
  });

  beforeAll(async () => {
    target = sqliteTarget();
    await connectRedis(publisher);
    const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: target.url } });
    // The same wiring the CLI uses when TOLLGATE_REDIS_URL is set: mutations publish after they commit.
    stores = await openStores(config, { events: createRedisKeyEvents({ redis: publisher, prefix }) });
    replicas = await Promise.all([startReplica(env()), startReplica(env()), startReplica(env())]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(replicas.map(stopReplica));
    await stores?.db.close();
    const stale = await publisher.keys(`${prefix}:*`);
    if (stale.length) await publisher.del(...stale);
    publisher.disconnect();
    await target?.cleanup();
  });

  async function newKey(requestsPerMinute?: number) {
    const account = await stores.accounts.create({ name: "replicas", planId: "pro" });
    await stores.ledger.topUp({ accountId: account.id, amount: 1_000_000_000_000n as never, feeBps: 0, now: Date.now() });
    return stores.keys.create({ accountId: account.id, requestsPerMinute });
  }

  it("admits exactly 60 of 600 concurrent Checks spread over three replicas, for a key limited to 60 per minute", async () => {
    const { secret } = await newKey(60);
    // Warm each replica's key cache so the burst is all limiter, then burst from a fresh key window.
    const warm = await newKey(60);
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(warm.secret))).allowed).toBe(true);
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 600 }, (_, i) => replicas[i % 3]!.client.check(chatCheck(secret)).then(outcome)),
    );
    const elapsed = Date.now() - started;
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.httpStatus, (statuses.get(r.httpStatus) ?? 0) + 1);
    console.log(`three replicas: 600 Checks in ${elapsed} ms → ${JSON.stringify(Object.fromEntries(statuses))}`);
    if (statuses.has(503)) console.log(replicas.map((r) => r.output.join("").split("\n").filter((l) => /"level":(40|50)/.test(l)).slice(0, 3).join("\n")).join("\n"));
    expect(elapsed).toBeLessThan(60_000);
    expect(results.filter((r) => r.allowed)).toHaveLength(60);
    expect(results.filter((r) => r.httpStatus === 429)).toHaveLength(540);
    // One shared window, not three (separate windows would have let up to 180 through): every replica is now full.
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(secret))).httpStatus).toBe(429);
  });

  it("a revocation reaches the other replicas within 1 s over pub/sub (measured)", async () => {
    const { key, secret } = await newKey();
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(secret))).allowed).toBe(true);
    const revokedAt = performance.now();
    await stores.keys.revoke(key.id);
    const committedMs = performance.now() - revokedAt;
    const latencies = await Promise.all(
      replicas.map(async (r) => {
        for (;;) {
          const res = outcome(await r.client.check(chatCheck(secret)));
          if (res.error?.code === "revoked_api_key") return performance.now() - revokedAt;
          expect(res.allowed).toBe(true);
          if (performance.now() - revokedAt > 2000) return Infinity;
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
      }),
    );
    console.log(`revocation propagation (revoke call incl. SQL commit ${committedMs.toFixed(1)} ms): ${latencies.map((l) => `${l.toFixed(1)} ms`).join(", ")}`);
    for (const latency of latencies) expect(latency).toBeLessThan(1000);
  });

  it("`tollgate keys revoke` in another process publishes too", async () => {
    const { key, secret } = await newKey();
    for (const r of replicas) expect(outcome(await r.client.check(chatCheck(secret))).allowed).toBe(true);
    const cli = spawn(process.execPath, ["--import", "tsx", CLI, "keys", "revoke", key.id, "--json"], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, ...env() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    cli.stderr!.on("data", (c) => (stderr += String(c)));
    expect(await new Promise((resolve) => cli.once("exit", resolve)), stderr).toBe(0);
    const exitedAt = performance.now();
    for (const r of replicas) {
      let res = outcome(await r.client.check(chatCheck(secret)));
      while (res.allowed && performance.now() - exitedAt < 1000) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        res = outcome(await r.client.check(chatCheck(secret)));
      }
      expect(res.error?.code).toBe("revoked_api_key");
    }
  });
});
