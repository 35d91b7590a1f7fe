import knexFactory from "knex";
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane } from "../../src/app/control-plane.js";
import { loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/logging.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores, describeWith, sqliteTarget, type StoreTarget } from "../support/services.js";

/**
 * Without Redis, credit reservations live in the authz process's memory, so two authz processes on one database each
 * spend the whole balance. The second refuses to start, naming the fix; a successor starts once the first is gone.
 */
describeStores("one admission process per database without Redis", (makeTarget) => {
  const planes: TestPlane[] = [];
  let target: StoreTarget;
  afterEach(async () => {
    for (const p of planes.splice(0).reverse()) await p.close();
    await target.cleanup();
  });
  /** The same database for every plane; the suite removes it. */
  const start = async (env: Record<string, string> = {}) => {
    const t = await startTestPlane({ ...target, cleanup: async () => undefined }, { env });
    planes.push(t);
    return t;
  };

  it("a second authz process on the same database refuses to start, naming TOLLGATE_REDIS_URL; after the first stops, a new one starts", async () => {
    target = makeTarget();
    const first = await start();
    const cpu = process.cpuUsage();
    await expect(start()).rejects.toThrow(
      /another authz process .* is already admitting requests on this database without Redis.*TOLLGATE_REDIS_URL/s,
    );
    // It waited for the holder's heartbeat to move, not spinning (generous bound: a second of CPU).
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1e6).toBeLessThan(1);
    await first.close();
    planes.splice(planes.indexOf(first), 1);
    const next = await start();
    expect(next.plane.authz).toBeDefined();
  });

  it("a process without the authz role starts beside the admission process", async () => {
    target = makeTarget();
    await start();
    const config = loadConfig({
      env: { TOLLGATE_DATABASE_URL: target.url },
      overrides: { "admin.listen": "127.0.0.1:0" },
    });
    const admin = await startControlPlane(config, {
      roles: ["admin"],
      logger: createLogger({ level: "silent" }),
      schema: target.schema,
    });
    await admin.close();
  });
});

describe("one admission process per database without Redis: a crashed holder", () => {
  it("a lease whose holder stopped heartbeating (killed) is taken over after its TTL, so a restart works", async () => {
    const target = sqliteTarget();
    const first = await startTestPlane({ ...target, cleanup: async () => undefined });
    const row = (await first.plane.stores.db.knex("coordination").where({ name: "lease:admission" }).first()) as Record<
      string,
      unknown
    >;
    expect(row).toBeDefined();
    await first.close();
    // Simulate SIGKILL: the lease row stays behind, fresh, and nobody heartbeats it any more.
    const knex = knexFactory({
      client: "better-sqlite3",
      connection: { filename: target.url.slice("sqlite:".length) },
      useNullAsDefault: true,
    });
    await knex("coordination").insert({ ...row, heartbeat_at: Date.now() });
    await knex.destroy();
    const started = Date.now();
    const second = await startTestPlane(target);
    // It waited for the dead holder's lease to run out (6 s without a heartbeat), then took it.
    expect(Date.now() - started).toBeGreaterThan(3000);
    await second.close();
  }, 20_000);
});

describeWith("redis", "several admission processes per database with Redis", (redisUrl) => {
  it("start side by side: reservations are shared in Redis", async () => {
    const target = sqliteTarget();
    const env = { TOLLGATE_REDIS_URL: redisUrl, TOLLGATE_REDIS_PREFIX: `test-lease-${process.pid}-${Date.now()}` };
    const a = await startTestPlane({ ...target, cleanup: async () => undefined }, { env });
    const b = await startTestPlane(target, { env });
    expect(b.plane.authz).toBeDefined();
    await a.close();
    await b.close();
  });
});
