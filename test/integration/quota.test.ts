import { randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { connectRedis, createRedisClient } from "../../src/adapters/redis/client.js";
import { withFailurePolicy } from "../../src/app/rate-limits.js";
import { createLogger } from "../../src/logging.js";
import { CLUSTER_SLOTS, keySlot, slotTag } from "../../src/adapters/redis/cluster-epochs.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { createRedisRateLimiter } from "../../src/adapters/redis/rate-limiter.js";
import { holdInTurn, type HoldRequest, type Quota, type RateLimiter } from "../../src/domain/admission.js";
import type { CreditReservations } from "../../src/domain/credits.js";
import { nanos } from "../../src/domain/money.js";
import { describeCluster, suiteRedisCluster } from "../support/redis-cluster.js";
import { describeWith, suiteRedis } from "../support/services.js";

const T0 = 1_750_000_000_000;

/** Every account starts with this balance (nano-USD) in the SQL stand-in. */
const BALANCE = 1_000n;

interface Backend {
  quota: Quota;
  limiter: RateLimiter;
  credits: CreditReservations;
}

/**
 * One suite for both ways admission holds a request: the in-process ports in turn, and the one Redis script. Both
 * must hold a request's window place and credit reservation together or not at all, the limiter deciding first.
 */
function conformance(make: () => Backend) {
  let b: Backend;
  beforeAll(() => {
    b = make();
  });
  const ids = () => ({ keyId: `key_${randomUUID().slice(0, 8)}`, accountId: `acct_${randomUUID().slice(0, 8)}` });
  const request = (who: { keyId: string; accountId: string }, over: Partial<HoldRequest> = {}): HoldRequest => ({
    ...who,
    decisionId: randomUUID(),
    requestsPerMinute: 3,
    tokensPerMinute: 1000,
    tokens: 100,
    amount: nanos(100n),
    now: T0,
    ...over,
  });
  const hold = (r: HoldRequest) => Promise.resolve(b.quota.hold(r));

  it("holds a place in the window and the credit, loading the balance on first use, and reports the window", async () => {
    const who = ids();
    const outcome = await hold(request(who));
    expect(outcome).toEqual({
      held: true,
      rateLimit: {
        requests: { limit: 3, remaining: 2, resetSeconds: 60 },
        tokens: { limit: 1000, remaining: 900, resetSeconds: 60 },
      },
    });
    expect(await hold(request(who, { amount: nanos(BALANCE - 100n + 1n) }))).toEqual({
      held: false,
      available: nanos(BALANCE - 100n),
    });
  });

  it("a credit refusal leaves the window untouched", async () => {
    const who = ids();
    for (let i = 0; i < 5; i++)
      expect(await hold(request(who, { amount: nanos(BALANCE + 1n) }))).toMatchObject({
        held: false,
        available: nanos(BALANCE),
      });
    // Three per minute still fit: none of the refused requests took a place.
    for (let i = 0; i < 3; i++) expect((await hold(request(who))).held).toBe(true);
    expect(await hold(request(who))).toMatchObject({
      held: false,
      rate: { admitted: false, dimension: "requests", retryAfterSeconds: 60 },
    });
  });

  it("a rate refusal reserves no credit, and outranks a credit refusal", async () => {
    const who = ids();
    for (let i = 0; i < 3; i++) expect((await hold(request(who, { amount: nanos(300n) }))).held).toBe(true);
    // Both would refuse now (4th request, 100 left): the limiter's answer wins, as with separate ports.
    expect(await hold(request(who, { amount: nanos(200n) }))).toMatchObject({
      held: false,
      rate: { dimension: "requests" },
    });
    // The refused request took no credit: 100 are still available a minute later.
    expect(await hold(request(who, { amount: nanos(100n), now: T0 + 60_000 }))).toMatchObject({ held: true });
    expect(await hold(request(who, { amount: nanos(1n), now: T0 + 60_000 }))).toEqual({
      held: false,
      available: nanos(0n),
    });
  });

  it("tokens per minute refuse with the wait until enough settled tokens age out, or briefly for requests in flight", async () => {
    const who = ids();
    const first = request(who, { tokens: 600 });
    expect((await hold(first)).held).toBe(true);
    expect(await hold(request(who, { tokens: 500, now: T0 + 10_000 }))).toMatchObject({
      held: false,
      rate: { dimension: "tokens", retryAfterSeconds: 1, inFlightTokens: 600 },
    });
    await b.limiter.settle({ ...who, decisionId: first.decisionId, actualTokens: 600, now: T0 + 10_000 });
    expect(await hold(request(who, { tokens: 500, now: T0 + 10_000 }))).toMatchObject({
      held: false,
      rate: { dimension: "tokens", retryAfterSeconds: 50 },
    });
  });

  it("concurrent holds never overdraw: exactly as many as the balance covers", async () => {
    const who = ids();
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, () =>
        hold(request(who, { requestsPerMinute: 1000, tokensPerMinute: 1e9, amount: nanos(BALANCE / 10n) })),
      ),
    );
    expect(outcomes.filter((o) => o.held)).toHaveLength(10);
    // The 40 refused for credit hold no place in the window: 990 more requests still fit.
    const next = await hold(request(who, { requestsPerMinute: 1000, tokensPerMinute: 1e9, amount: nanos(0n) }));
    expect(next).toMatchObject({ held: true, rateLimit: { requests: { remaining: 989 } } });
  });

  it("settle and commit act on what the hold wrote: the meter's refund and release reach the same keys", async () => {
    const who = ids();
    const held = request(who, { tokens: 900 });
    expect((await hold(held)).held).toBe(true);
    await b.limiter.settle({ ...who, decisionId: held.decisionId, actualTokens: 50, now: T0 + 1 });
    await b.credits.committed([
      { accountId: who.accountId, delta: -40n, balance: nanos(BALANCE - 40n), version: 2, settled: [held.decisionId] },
    ]);
    expect(await hold(request(who, { tokens: 950, amount: nanos(BALANCE - 40n), now: T0 + 2 }))).toMatchObject({
      held: true,
      rateLimit: { tokens: { remaining: 0 } },
    });
  });

  it("daily tokens: a hold never settled (access log lost) stops counting as in flight after its TTL", async () => {
    const who = ids();
    const tpd = { tokensPerDay: 1000, tokensPerMinute: 1_000_000, amount: nanos(1n) };
    expect((await hold(request(who, { ...tpd, tokens: 900 }))).held).toBe(true);
    expect(await hold(request(who, { ...tpd, tokens: 200, now: T0 + 1000 }))).toMatchObject({
      held: false,
      rate: { dimension: "tokens_day", retryAfterSeconds: 1 },
    });
    // Two hours on (past the reservation TTL both ways use): nothing is in flight, the wait is until midnight UTC.
    const later = T0 + 7_200_000;
    const midnight = (Math.floor(later / 86_400_000) + 1) * 86_400_000;
    expect(await hold(request(who, { ...tpd, tokens: 200, now: later }))).toMatchObject({
      held: false,
      rate: { dimension: "tokens_day", retryAfterSeconds: Math.ceil((midnight - later) / 1000) },
    });
  });
}

const source = {
  balances: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { balance: nanos(BALANCE), version: 1 }])),
};

describe("admission quota [in process, ports in turn]", () => {
  conformance(() => {
    const limiter = createMemoryRateLimiter();
    const credits = createMemoryCreditGate({ source, reservationTtlMs: 600_000 });
    return { quota: holdInTurn(limiter, credits), limiter, credits };
  });
});

describeCluster("admission quota [redis cluster, one script]", (cluster) => {
  const prefix = `test_quota_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedisCluster(cluster, `${prefix}:`);
  conformance(() => {
    const limiter = createRedisRateLimiter({ redis: redis(), prefix });
    const credits = createRedisCreditGate({ redis: redis(), source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    return { quota: createRedisQuota({ redis: redis(), prefix, credits }), limiter, credits };
  });

  /** A gate as authz builds it: SQL remembers the dataset (here in memory), so a lost slot is told from a new one. */
  const authzGate = (remembered: { epoch: string | null; writes: number }, losses: string[], gatePrefix: string) =>
    createRedisCreditGate({
      redis: redis(),
      source,
      reservationTtlMs: 600_000,
      prefix: gatePrefix,
      clock: () => T0,
      epochs: {
        read: async () => remembered.epoch,
        write: async (epoch) => void ((remembered.epoch = epoch), remembered.writes++),
      },
      onDataLoss: ({ cause }) => void losses.push(cause),
    });
  /** An account id whose keys land in another slot than `other`'s (and so, most likely, on another master). */
  const accountIn = (label: string, other?: string) => {
    for (;;) {
      const id = `acct_${label}_${randomUUID().slice(0, 8)}`;
      if (!other || keySlot(`{${id}}`) !== keySlot(`{${other}}`)) return id;
    }
  };
  const hold = (quota: Quota, accountId: string) =>
    quota.hold({
      keyId: "key_c",
      accountId,
      decisionId: randomUUID(),
      requestsPerMinute: 1000,
      tokensPerMinute: 1e9,
      tokens: 1,
      amount: nanos(1n),
      now: T0,
    });
  const slotKeys = async (pattern: string) => {
    let n = 0;
    for (const node of redis().nodes("master")) n += (await node.keys(pattern)).length;
    return n;
  };

  it("a first start gives every slot its epoch before SQL remembers the dataset", async () => {
    const gatePrefix = `${prefix}:first:`;
    const remembered = { epoch: null as string | null, writes: 0 };
    const gate = authzGate(remembered, [], gatePrefix);
    expect(await gate.whenVerified(20_000)).toBe(true);
    expect(remembered).toMatchObject({ writes: 1, epoch: expect.any(String) });
    expect(await slotKeys(`${gatePrefix}{e*}:epoch`)).toBe(CLUSTER_SLOTS);
    await gate.close();
  });

  it("a slot whose server changed (restart, failover) or whose epoch is gone (emptied) is fenced; other slots decide on", async () => {
    const gatePrefix = `${prefix}:fence:`;
    const remembered = { epoch: null as string | null, writes: 0 };
    const losses: string[] = [];
    const credits = authzGate(remembered, losses, gatePrefix);
    const quota = createRedisQuota({ redis: redis(), prefix, credits });
    expect(await credits.whenVerified(20_000)).toBe(true);
    const a = accountIn("moved");
    const b = accountIn("bystander", a);
    const c = accountIn("emptied", a);
    for (const id of [a, b, c]) expect((await hold(quota, id)).held).toBe(true);

    // What a promoted replica or a restarted master shows: the slot's data, another server.
    const [, , serverKey] = slotEpochKeys(gatePrefix, a);
    await redis().set(serverKey, "another-run-id:another-replid");
    expect(await hold(quota, a)).toMatchObject({ held: false, fenced: true });
    expect(losses).toEqual(["server_changed"]);
    expect((await hold(quota, b)).held).toBe(true);

    // What a master that came back empty shows for its slots: no epoch.
    if (keySlot(`{${c}}`) !== keySlot(`{${a}}`)) {
      await redis().del(slotEpochKeys(gatePrefix, c)[0]);
      expect(await hold(quota, c)).toMatchObject({ held: false, fenced: true });
      expect(losses).toEqual(["server_changed", "emptied"]);
    }
    expect((await hold(quota, b)).held).toBe(true);
    await credits.close();
  });

  it("redis.fail_open never admits on a slot that cannot be verified (INFO refused by ACL): 503", async () => {
    const c = cluster();
    for (const node of c.nodes) c.cli(node, "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info");
    const url = c.url.replace("redis+cluster://", "redis+cluster://noinfo:pw@");
    const limited = createRedisClient(url, { commandTimeoutMs: 5000 });
    try {
      expect(await connectRedis(limited)).toBe(true);
      const credits = createRedisCreditGate({
        redis: limited,
        source,
        reservationTtlMs: 600_000,
        prefix: `${prefix}:acl:`,
      });
      const quota = withFailurePolicy(createRedisQuota({ redis: limited, prefix, credits }), {
        failOpen: true,
        logger: createLogger({ level: "silent" }),
      });
      await expect(Promise.resolve(hold(quota, accountIn("acl")))).rejects.toThrow(/verified/);
      // INFO granted: the slot is verified and decides; INFO revoked afterwards: the guard inside the script is refused.
      const account = accountIn("acl_later");
      for (const node of c.nodes) c.cli(node, "ACL", "SETUSER", "noinfo", "+info");
      expect(await hold(quota, account)).toMatchObject({ held: true, rateLimit: expect.anything() });
      for (const node of c.nodes) c.cli(node, "ACL", "SETUSER", "noinfo", "-info");
      await expect(Promise.resolve(hold(quota, account))).rejects.toThrow(/verified/);
      await credits.close();
    } finally {
      limited.disconnect();
    }
  });
});

describeWith("redis", "admission quota [redis, one script]", (url) => {
  const prefix = `test_quota_${process.pid}_${randomUUID().slice(0, 8)}`;
  const redis = suiteRedis(url, `${prefix}:`);
  conformance(() => {
    const limiter = createRedisRateLimiter({ redis, prefix });
    const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    return { quota: createRedisQuota({ redis, prefix, credits }), limiter, credits };
  });

  it("Checks of one key that arrive together share one script run, each answered as if decided alone", async () => {
    const gate = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    let runs = 0; // every script run goes through the gate's reserveWith, once
    const credits: typeof gate = { ...gate, reserveWith: (...args) => (runs++, gate.reserveWith(...args)) };
    const quota = createRedisQuota({ redis, prefix, credits });
    const who = { keyId: "key_batch", accountId: `acct_batch_${randomUUID().slice(0, 8)}` };
    const requests = Array.from({ length: 40 }, (_, i) => ({
      ...who,
      decisionId: randomUUID(),
      requestsPerMinute: 30,
      tokensPerMinute: 1e9,
      tokens: 1,
      amount: nanos(i % 2 === 0 ? 10n : BALANCE),
      now: T0,
    }));
    const outcomes = await Promise.all(requests.map((r) => quota.hold(r)));
    // Decided in order: each odd one wants the whole balance, which the even ones before it already dented, so it is
    // refused for credit and takes no place in the window (remaining counts 29, 28, … over the even ones only).
    expect(outcomes.filter((o) => o.held)).toHaveLength(20);
    expect(outcomes.filter((o) => "available" in o)).toHaveLength(20);
    expect(outcomes.filter((o) => "rate" in o)).toHaveLength(0);
    expect(outcomes[0]).toMatchObject({ held: true, rateLimit: { requests: { remaining: 29 } } });
    expect(outcomes[38]).toMatchObject({ held: true, rateLimit: { requests: { remaining: 10 } } });
    expect(runs).toBe(2); // 40 decisions, at most 32 per run
    // 20 places taken of 30: ten more fit, the eleventh meets the requests limit.
    const more = await Promise.all(
      Array.from({ length: 11 }, () => quota.hold({ ...requests[0]!, decisionId: randomUUID(), now: T0 + 1 })),
    );
    expect(more.filter((o) => o.held)).toHaveLength(10);
    expect(more[10]).toMatchObject({ held: false, rate: { dimension: "requests" } });
  });

  it("a verified connection decides a Check in one command; after a reconnect the server is checked before any Check", async () => {
    const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    const quota = createRedisQuota({ redis, prefix, credits });
    const who = { keyId: "key_one_trip", accountId: `acct_one_trip_${randomUUID().slice(0, 8)}` };
    const hold = (now: number) =>
      quota.hold({
        ...who,
        decisionId: randomUUID(),
        requestsPerMinute: 100,
        tokensPerMinute: 1e9,
        tokens: 1,
        amount: nanos(1n),
        now,
      });
    expect((await hold(T0)).held).toBe(true); // verifies the connection, loads the balance, indexes the account
    const sent: string[][] = [];
    const original = redis.sendCommand.bind(redis);
    redis.sendCommand = ((command: { name: string; args: unknown[] }, ...rest: unknown[]) => {
      sent.push([command.name, ...command.args.map(String)]);
      return (original as (...a: unknown[]) => unknown)(command, ...rest);
    }) as typeof redis.sendCommand;
    try {
      expect((await hold(T0 + 1)).held).toBe(true);
      expect(sent.map((c) => c[0])).toEqual(["evalsha"]);

      sent.length = 0;
      const closed = new Promise((resolve) => redis.once("close", resolve));
      redis.disconnect(true);
      await closed;
      await new Promise((resolve) => redis.once("ready", resolve));
      expect(credits.isVerified()).toBe(false);
      expect((await hold(T0 + 2)).held).toBe(true);
      const scripts = sent.filter((c) => c[0] === "evalsha" || c[0] === "eval");
      // The attach script (it reads the server's identity and the {credit} keys) runs before the admission script.
      expect(scripts[0]!.some((arg) => arg.endsWith("{credit}:server"))).toBe(true);
      expect(scripts.at(-1)!.some((arg) => arg.endsWith("rl:key_one_trip:req"))).toBe(true);
    } finally {
      redis.sendCommand = original;
    }
  });

  it("writes only keys under the account's hash tag, so the script runs in one Cluster slot", async () => {
    const credits = createRedisCreditGate({ redis, source, reservationTtlMs: 600_000, prefix: `${prefix}:` });
    const quota = createRedisQuota({ redis, prefix, credits });
    await quota.hold({
      keyId: "key_tag",
      accountId: "acct_tag",
      decisionId: randomUUID(),
      requestsPerMinute: 3,
      tokensPerMinute: 1000,
      tokens: 1,
      amount: nanos(1n),
      now: Date.now(),
    });
    const keys = (await redis.keys(`${prefix}:*acct_tag*`)).sort();
    expect(keys).toEqual(
      ["bal", "bud", "exp", "held", "resv", "rl:key_tag:req", "rl:key_tag:tok"].map((k) => `${prefix}:{acct_tag}:${k}`),
    );
  });
});

/** The epoch, fence and server keys of an account's slot under a gate's prefix (cluster-epochs.ts). */
function slotEpochKeys(gatePrefix: string, accountId: string): [string, string, string] {
  const base = `${gatePrefix}{${slotTag(keySlot(`{${accountId}}`))}}:`;
  return [`${base}epoch`, `${base}fence`, `${base}server`];
}
