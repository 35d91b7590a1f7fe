import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, expect, it } from "vitest";
import { createRedisClient, connectRedis } from "../../src/adapters/redis/client.js";
import { keySlot } from "../../src/adapters/redis/cluster-epochs.js";
import { createRedisKeyEvents, subscribeKeyEvents } from "../../src/adapters/redis/invalidation.js";
import type { KeyChange } from "../../src/domain/key-events.js";
import { nanos } from "../../src/domain/money.js";
import { outcome, type CheckOutcome } from "../support/authz-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { chatCheck } from "../support/rate-limits.js";
import { describeCluster, type TestRedisCluster } from "../support/redis-cluster.js";
import { describeWith, postgresTarget } from "../support/services.js";

/** The reservation TTL of the drill: how long a slot whose master failed over stays fenced. */
const TTL_MS = 6000;

interface Seen {
  at: number;
  check: CheckOutcome;
}

describeWith("postgres", "Redis Cluster failover drill", (databaseUrl) => {
  describeCluster("a master killed mid-run", (cluster) => {
    const prefix = `test-failover-${process.pid}-${randomUUID().slice(0, 8)}`;
    let t: TestPlane | undefined;
    afterAll(async () => {
      await t?.close();
    });

    it("its accounts get 503 until a replica is promoted and the fence has passed, other masters' accounts decide on, no credit is granted twice, key changes still arrive", async () => {
      const c: TestRedisCluster = cluster();
      t = await startTestPlane(postgresTarget(databaseUrl), {
        env: {
          TOLLGATE_REDIS_URL: c.url,
          TOLLGATE_REDIS_PREFIX: prefix,
          TOLLGATE_METER_RESERVATION_TTL_MS: String(TTL_MS),
        },
        accountCredits: 0n,
      });
      const plane = t;
      const ledger = plane.plane.stores.ledger;
      const check = async (secret: string) => outcome(await plane.authz.check(chatCheck(secret)));
      const fund = (accountId: string, amount: bigint) =>
        ledger.topUp({ accountId, amount: nanos(amount), feeBps: 0, now: Date.now() });

      // The worst case of one request, read from a probe's admission metadata.
      const probe = await plane.account("pro");
      await fund(probe.accountId, 10n ** 12n);
      const probed = await check(probe.secret);
      expect(probed.allowed, probed.body).toBe(true);
      const worst = BigInt(probed.metadata.reserved_nanos as string);

      // victim: funded for exactly 10 requests, in a slot of the master that will be killed; fresh: another account of
      // that master; bystander: an account of another master.
      const victim = await plane.account("pro");
      await fund(victim.accountId, 10n * worst + worst - 1n);
      const master = await c.masterOf(keySlot(`{${victim.accountId}}`));
      let fresh: Awaited<ReturnType<TestPlane["account"]>> | undefined;
      let bystander: Awaited<ReturnType<TestPlane["account"]>> | undefined;
      while (!fresh || !bystander) {
        const a = await plane.account("pro");
        const onMaster = (await c.masterOf(keySlot(`{${a.accountId}}`))) === master;
        if (onMaster && !fresh) fresh = a;
        else if (!onMaster && !bystander) bystander = a;
      }
      await fund(fresh.accountId, 10n ** 12n);
      await fund(bystander.accountId, 10n ** 12n);

      // Key changes travel on plain pub/sub, which the cluster broadcasts to every node: two subscribers (each on a
      // node of its client's choosing) hear a change published through the hot-path client.
      const publisher = createRedisKeyEvents({ redis: plane.plane.rateLimiting.redis!, prefix });
      const heard: KeyChange[][] = [[], []];
      /** Times each subscriber was told to drop its cache because changes may have been missed (a topology change). */
      const resubscribed = [0, 0];
      const subscribers = heard.map((into, i) => {
        const subscriber = createRedisClient(c.url, { failFast: false });
        return {
          subscriber,
          subscription: subscribeKeyEvents({
            subscriber,
            prefix,
            onChange: (change) => into.push(change),
            onResubscribed: () => resubscribed[i]!++,
          }),
        };
      });
      const hearsEverywhere = async (keyId: string, timeoutMs: number) => {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          await publisher.publish({ keyId });
          await sleep(100);
          if (heard.every((h) => h.some((change) => change.keyId === keyId))) return true;
        }
        return false;
      };
      try {
        for (const s of subscribers) {
          expect(await connectRedis(s.subscriber, 10_000)).toBe(true);
          await s.subscription.ready;
        }
        expect(await hearsEverywhere("key_before", 5000)).toBe(true);
        expect(resubscribed).toEqual([0, 0]);

        for (let i = 0; i < 6; i++) expect((await check(victim.secret)).allowed).toBe(true);
        expect((await check(fresh.secret)).allowed).toBe(true);
        expect((await check(bystander.secret)).allowed).toBe(true);
        // The replica has the reservations before the kill (replication is asynchronous: what it could miss is what
        // the fence is for), so the no-double-grant count below is exact.
        await c.waitForReplication(master);

        const killedAt = Date.now();
        await c.kill(master);
        const seen: Record<"victim" | "fresh" | "bystander", Seen[]> = { victim: [], fresh: [], bystander: [] };
        const who = { victim, fresh, bystander };
        const firstAllowed = (name: keyof typeof seen) => seen[name].find((s) => s.check.allowed);
        while (!firstAllowed("fresh") && Date.now() - killedAt < 30_000) {
          await Promise.all(
            (Object.keys(who) as Array<keyof typeof who>).map(async (name) => {
              const result = await check(who[name].secret);
              seen[name].push({ at: Date.now(), check: result });
            }),
          );
          await sleep(50);
        }
        const promoted = await c.waitForFailover(keySlot(`{${victim.accountId}}`), master, 1000);
        expect(promoted).not.toBe(master);

        // Decisions resume on the failed master's slots once a replica was promoted and the fence has passed.
        const resumed = firstAllowed("fresh");
        expect(resumed, "the failed master's accounts never got a decision again").toBeDefined();
        for (const name of ["victim", "fresh"] as const) {
          const allowedAt = firstAllowed(name)?.at ?? Number.POSITIVE_INFINITY;
          // Fail closed meanwhile: every answer before the first admission was 503 unavailable, never an allow,
          // and no admission came before every reservation taken before the kill had expired.
          const before = seen[name].filter((s) => s.at < allowedAt);
          expect(before.length).toBeGreaterThan(0);
          for (const s of before) expect([s.check.httpStatus, s.check.error?.code]).toEqual([503, "unavailable"]);
          if (allowedAt !== Number.POSITIVE_INFINITY) expect(allowedAt - killedAt).toBeGreaterThanOrEqual(TTL_MS);
        }
        // The other masters' accounts were not fenced: they decided again as soon as the cluster was whole.
        const bystanderAt = firstAllowed("bystander")?.at;
        expect(bystanderAt).toBeDefined();
        expect(bystanderAt!).toBeLessThan(resumed!.at);
        expect(plane.logs.join("")).toContain("server_changed");

        // No credit granted twice: the victim's ten requests' worth was never exceeded, before or after.
        const after = [] as CheckOutcome[];
        for (let i = 0; i < 6; i++) after.push(await check(victim.secret));
        const victimAllowed =
          6 + seen.victim.filter((s) => s.check.allowed).length + after.filter((r) => r.allowed).length;
        expect(victimAllowed).toBeLessThanOrEqual(10);
        expect(after.at(-1)).toMatchObject({ httpStatus: 402 });

        // Key changes still reach every subscriber after the failover (ioredis moves a subscriber off a dead node).
        expect(await hearsEverywhere("key_after", 10_000)).toBe(true);
        // and each was told that changes published during the failover may have been missed (the poll catches them).
        expect(resubscribed.every((n) => n > 0)).toBe(true);
      } finally {
        for (const s of subscribers) await s.subscription.close();
      }
    }, 90_000);
  });
});
