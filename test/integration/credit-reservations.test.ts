import { afterEach, describe, expect, it } from "vitest";
import { nanos } from "../../src/domain/money.js";
import { describeCluster, suiteRedisCluster } from "../support/redis-cluster.js";
import { describeWith, postgresTarget, sqliteTarget, suiteRedis, type StoreTarget } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { alsEntry, connectAls } from "../support/als-client.js";
import { worstCaseEvents } from "../support/credit-stack.js";

const BODY = JSON.stringify({
  model: "gpt-5.5",
  max_tokens: 100,
  messages: [{ role: "user", content: "How many credits do I have?" }],
});

function request(secret: string) {
  return envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: BODY,
  });
}

/**
 * 200 Checks at once against a balance covering 10 worst-case requests (and not quite 11): exactly 10 are
 * admitted, the rest get 402 insufficient_credits, and settling every admitted request at its full worst case
 * leaves the balance at or above zero.
 */
function concurrentAdmissions(
  makeTarget: () => StoreTarget,
  environment: Record<string, string> | (() => Record<string, string>),
) {
  // A function when the service's address is known only once the suite has started it (a Redis Cluster).
  const env = () => (typeof environment === "function" ? environment() : environment);
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("admits at most 10 of 200 concurrent requests and the balance never goes below zero", async () => {
    t = await startTestPlane(makeTarget(), { env: env(), accountCredits: 0n });
    const ledger = t.plane.stores.ledger;
    // The worst case for this body, read from a probe account's admission metadata.
    const probe = await t.account("pro");
    await ledger.topUp({ accountId: probe.accountId, amount: nanos(1_000_000_000n), feeBps: 2500, now: Date.now() });
    const probed = outcome(await t.authz.check(request(probe.secret)));
    expect(probed.allowed).toBe(true);
    const worst = BigInt(probed.metadata.reserved_nanos as string);
    expect(worst).toBeGreaterThan(0n);

    const { accountId, secret } = await t.account("pro");
    await ledger.topUp({ accountId, amount: nanos(10n * worst + worst - 1n), feeBps: 2500, now: Date.now() });
    const results = await Promise.all(Array.from({ length: 200 }, () => t!.authz.check(request(secret)).then(outcome)));
    const admitted = results.filter((r) => r.allowed);
    const refused = results.filter((r) => !r.allowed);
    expect(admitted).toHaveLength(10);
    expect(refused.every((r) => r.httpStatus === 402 && r.error?.code === "insufficient_credits")).toBe(true);

    // Settle every admitted request at its full worst case through the meter's commit path.
    const events = worstCaseEvents(admitted, accountId, worst);
    const result = await ledger.commit({ events, expired: [], deadLetters: [], now: Date.now() });
    await t.plane.metering.credits.committed(result.changes);
    const balance = (await ledger.balance(accountId)).balance;
    expect(balance).toBe(worst - 1n);
    expect(balance).toBeGreaterThanOrEqual(0n);
    expect(await ledger.entriesTotal(accountId)).toBe(balance);
    // Released reservations and the settled balance agree: still not enough for one more.
    expect(outcome(await t.authz.check(request(secret))).httpStatus).toBe(402);
  });

  it("the meter settles a billed request's tokens in its key's window: the reservation becomes the actual usage", async () => {
    t = await startTestPlane(makeTarget(), {
      env: { ...env(), TOLLGATE_METER_LISTEN: "127.0.0.1:0", TOLLGATE_METER_BATCH_WINDOW_MS: "2" },
      roles: ["authz", "meter"],
    });
    const { accountId, secret } = await t.account("pro", { tokensPerMinute: 5000 });
    const first = outcome(await t.authz.check(request(secret)));
    expect(first.allowed).toBe(true);
    const reserved = Number(first.metadata.reserved_tokens);
    expect(first.responseHeaders["x-ratelimit-remaining-tokens"]).toBe(String(5000 - reserved));

    const als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    const stream = als.open();
    stream.send([
      alsEntry({
        decisionId: first.metadata.decision_id as string,
        accountId,
        keyId: first.metadata.key_id as string,
        usage: { prompt: 10, completion: 5 },
      }),
    ]);
    await stream.end();
    als.close();
    await t.plane.metering.meter.drain();

    const second = outcome(await t.authz.check(request(secret)));
    expect(second.responseHeaders["x-ratelimit-remaining-tokens"]).toBe(String(5000 - 15 - reserved));
  });
}

describe("credit reservations [sqlite + in-process]", () => concurrentAdmissions(sqliteTarget, {}));

describeWith("postgres", "credit reservations [postgres + redis]", (databaseUrl) => {
  describeWith("redis", "with redis", (redisUrl) => {
    const prefix = `test-credits-${process.pid}-${Date.now()}`;
    suiteRedis(redisUrl, `${prefix}:`); // deletes the suite's keys afterwards
    concurrentAdmissions(() => postgresTarget(databaseUrl), {
      TOLLGATE_REDIS_URL: redisUrl,
      TOLLGATE_REDIS_PREFIX: prefix,
    });
  });
});

describeWith("postgres", "credit reservations [postgres + redis cluster]", (databaseUrl) => {
  describeCluster("with a redis cluster", (cluster) => {
    const prefix = `test-credits-${process.pid}-${Date.now()}`;
    suiteRedisCluster(cluster, `${prefix}:`); // deletes the suite's keys afterwards
    concurrentAdmissions(
      () => postgresTarget(databaseUrl),
      () => ({
        TOLLGATE_REDIS_URL: cluster().url,
        TOLLGATE_REDIS_PREFIX: prefix,
      }),
    );
  });
});
