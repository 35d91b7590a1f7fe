import type { ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWith, sqliteTarget } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { outcome, type CheckOutcome } from "../support/authz-client.js";
import { freePort } from "../support/ports.js";
import { chatCheck, startRedisServer, stopRedisServer } from "../support/rate-limits.js";

async function check(plane: TestPlane, secret: string, maxTokens?: number): Promise<CheckOutcome> {
  return outcome(await plane.authz.check(chatCheck(secret, maxTokens)));
}

describe("rate limits through Check [in-process limiter]", () => {
  const clock = { now: Date.parse("2026-11-26T12:00:00Z") };
  let plane: TestPlane;
  beforeAll(async () => {
    plane = await startTestPlane(sqliteTarget(), { clock: () => clock.now });
  });
  afterAll(() => plane?.close());

  it("429: the 11th request within a minute on the basic plan, with Retry-After and x-ratelimit headers", async () => {
    expect(plane.plane.rateLimiting.backend).toBe("memory");
    const { secret } = await plane.account("basic");
    const remaining: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await check(plane, secret);
      expect(res.allowed, res.body).toBe(true);
      remaining.push(res.responseHeaders["x-ratelimit-remaining-requests"]!);
      clock.now += 1000;
    }
    expect(remaining).toEqual(["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]);
    const eleventh = await check(plane, secret);
    expect(eleventh.httpStatus).toBe(429);
    expect(eleventh.error).toMatchObject({ code: "rate_limit_exceeded", type: "rate_limit_error" });
    // The first request (10 s ago) ages out in 50 s.
    expect(eleventh.headers["retry-after"]).toBe("50");
    expect(eleventh.headers).toMatchObject({
      "x-ratelimit-limit-requests": "10",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "59s", // the newest admission (1 s ago) ages out in 59 s
      "x-ratelimit-limit-tokens": "100000",
    });
    expect(Number(eleventh.headers["x-ratelimit-remaining-tokens"])).toBeLessThan(100_000);
  });

  it("a client that waits the Retry-After it was given is admitted", async () => {
    const { secret } = await plane.account("basic");
    for (let i = 0; i < 10; i++) {
      expect((await check(plane, secret)).allowed).toBe(true);
      clock.now += 2345;
    }
    const refused = await check(plane, secret);
    expect(refused.httpStatus).toBe(429);
    const wait = Number(refused.headers["retry-after"]);
    clock.now += (wait - 1) * 1000;
    expect((await check(plane, secret)).httpStatus).toBe(429);
    clock.now += 1000;
    expect((await check(plane, secret)).allowed).toBe(true);
  });

  it("exactly 60 of 600 concurrent Checks pass on a key limited to 60 requests per minute", async () => {
    const { secret } = await plane.account("pro", { requestsPerMinute: 60 });
    const results = await Promise.all(Array.from({ length: 600 }, () => check(plane, secret)));
    expect(results.filter((r) => r.allowed)).toHaveLength(60);
    expect(results.filter((r) => r.httpStatus === 429)).toHaveLength(540);
  });

  it("429 without Retry-After when one request needs more tokens than the key's TPM: it can never fit", async () => {
    const { secret } = await plane.account("basic", { tokensPerMinute: 1000 });
    const res = await check(plane, secret, 2000);
    expect(res.httpStatus).toBe(429);
    expect(res.error?.message).toMatch(/never fit/);
    expect(res.headers["retry-after"]).toBeUndefined();
    expect((await check(plane, secret, 500)).allowed).toBe(true);
  });
});

describeWith("redis", "rate limits through Check [redis limiter, Redis stopped and restarted]", () => {
  const clock = { now: Date.parse("2026-11-26T12:00:00Z") };
  let port: number;
  let redis: ChildProcess;
  let plane: TestPlane;
  beforeAll(async () => {
    port = await freePort();
    redis = await startRedisServer(port);
    plane = await startTestPlane(sqliteTarget(), {
      clock: () => clock.now,
      env: { TOLLGATE_REDIS_URL: `redis://127.0.0.1:${port}` },
    });
  });
  afterAll(async () => {
    await plane?.close();
    if (redis) await stopRedisServer(redis);
  });

  it("503 unavailable with Retry-After while Redis is down (fail closed), then correct decisions again without a restart", async () => {
    expect(plane.plane.rateLimiting.backend).toBe("redis");
    const { secret } = await plane.account("basic");
    for (let i = 0; i < 3; i++) expect((await check(plane, secret)).allowed).toBe(true);

    await stopRedisServer(redis);
    const started = Date.now();
    const down = await check(plane, secret);
    const answeredInMs = Date.now() - started;
    expect(down.httpStatus).toBe(503);
    expect(down.error?.code).toBe("unavailable");
    expect(down.headers["retry-after"]).toBe("1");
    expect(answeredInMs).toBeLessThan(1000); // fails fast: no offline queue, no retries
    expect(
      plane.logs.some((l) =>
        l.includes("rate limits and credit reservations unreachable; answering 503 (fail closed)"),
      ),
    ).toBe(true);

    redis = await startRedisServer(port); // same port; empty (no persistence)
    let resumed: CheckOutcome | undefined;
    for (let i = 0; i < 100; i++) {
      resumed = await check(plane, secret);
      if (resumed.httpStatus !== 503 || resumed.error?.message.includes("loss of Redis data")) break;
      await sleep(50);
    }
    // The empty Redis lost the three admissions' credit reservations while they may still be running: credit stays
    // fenced until every reservation taken before the loss has expired (one reservation TTL), then decisions resume.
    expect(resumed!.error?.message).toMatch(/recovered after a loss of Redis data/);
    clock.now += plane.config.meter.reservation_ttl_ms;
    resumed = await check(plane, secret);
    expect(resumed.allowed).toBe(true);
    // The restarted Redis lost the window: 10 per minute counts again from here (one admitted just now).
    for (let i = 0; i < 9; i++) expect((await check(plane, secret)).allowed).toBe(true);
    expect((await check(plane, secret)).httpStatus).toBe(429);
  });
});
