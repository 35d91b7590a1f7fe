// Usage limits through Check (real gRPC, SQLite + the in-process limiter): expected output per model and plan, daily
// quotas that roll over on a controllable clock, and requests in flight per key.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import { DAY_MS, dayOf } from "../../src/domain/rate-limit.js";
import { alsEntry, connectAls } from "../support/als-client.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { sqliteTarget } from "../support/services.js";

/** The default catalogue with limits of the tests' own: a plan and a model that set an expected output. */
function writeCatalogue(dir: string): string {
  const file = parse(readFileSync(join(PACKAGE_ROOT, "catalogue/default.yaml"), "utf8")) as {
    plans: Array<Record<string, unknown>>;
    models: Array<Record<string, unknown>>;
  };
  file.plans.push({
    id: "metered",
    name: "Metered",
    requests_per_minute: 1000,
    tokens_per_minute: 1_000_000,
    tiers: ["basic"],
    expected_output_tokens: 300,
    requests_per_day: 5,
    tokens_per_day: 100_000,
  });
  file.models.find((m) => m.id === "deepseek-v4-flash")!.expected_output_tokens = 40;
  const path = join(dir, "catalogue.yaml");
  writeFileSync(path, stringify(file));
  return path;
}

const chat = (secret: string, model: string, extra: Record<string, unknown> = {}) =>
  envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "Hello there" }], ...extra }),
  });

describe("usage limits through Check [sqlite + in-process]", () => {
  let dir: string;
  let t: TestPlane;
  let offsetMs = 0;
  const clock = () => Date.now() + offsetMs;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tollgate-limits-"));
    t = await startTestPlane(sqliteTarget(), {
      clock,
      roles: ["authz", "meter"],
      env: {
        TOLLGATE_CATALOGUE_FILE: writeCatalogue(dir),
        TOLLGATE_METER_LISTEN: "127.0.0.1:0",
        TOLLGATE_METER_BATCH_WINDOW_MS: "2",
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    offsetMs = 0;
  });

  /** Tokens the window counts for one admitted request: the limit less what remains after it. */
  const counted = (o: ReturnType<typeof outcome>) =>
    Number(o.responseHeaders["x-ratelimit-limit-tokens"]) - Number(o.responseHeaders["x-ratelimit-remaining-tokens"]);

  it("the window counts the prompt plus max_tokens, else the model's expected output, else the plan's, else 1024", async () => {
    const cases: Array<[string, string, Record<string, unknown>, number]> = [
      ["metered", "gpt-oss-120b", { max_tokens: 77 }, 77], // the client's max_tokens
      ["metered", "deepseek-v4-flash", {}, 40], // the model's expected output
      ["metered", "gpt-oss-120b", {}, 300], // the plan's
      ["pro", "gpt-oss-120b", {}, 1024], // the default
      ["pro", "gpt-oss-120b", { n: 2 }, 2048], // × n
    ];
    for (const [plan, model, extra, output] of cases) {
      // A fresh key each time, so the window holds this request alone.
      const { secret } = await t.account(plan);
      const o = outcome(await t.authz.check(chat(secret, model, extra)));
      expect(o.allowed, `${model} ${JSON.stringify(extra)}`).toBe(true);
      expect(counted(o), `${model} ${JSON.stringify(extra)}`).toBe(Number(o.metadata.prompt_tokens_estimate) + output);
      // The credit reservation stays the worst case: the model's output cap unless max_tokens says less.
      expect(Number(o.metadata.reserved_tokens)).toBeGreaterThanOrEqual(counted(o));
    }
  });

  /** Bills one admitted request through the meter (as Envoy's access log would), which settles its limits. */
  async function bill(o: ReturnType<typeof outcome>, accountId: string, usage = { prompt: 10, completion: 5 }) {
    const als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    const stream = als.open();
    stream.send([
      alsEntry({
        decisionId: o.metadata.decision_id as string,
        accountId,
        keyId: o.metadata.key_id as string,
        usage,
      }),
    ]);
    await stream.end();
    als.close();
    await t.plane.metering.meter.drain();
  }

  it("requests per day: the plan's 5 a UTC day, the 6th 429 with the -day headers and a Retry-After until midnight; the next day admits again", async () => {
    // Ten minutes before midnight UTC on the control plane's clock.
    offsetMs = (dayOf(Date.now()) + 1) * DAY_MS - 600_000 - Date.now();
    const { secret } = await t.account("metered");
    for (let i = 0; i < 5; i++) {
      const o = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 10 })));
      expect(o.allowed).toBe(true);
      expect(o.responseHeaders["x-ratelimit-limit-requests-day"]).toBe("5");
      expect(o.responseHeaders["x-ratelimit-remaining-requests-day"]).toBe(String(4 - i));
      expect(o.responseHeaders["x-ratelimit-limit-tokens-day"]).toBe("100000");
    }
    const refused = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 10 })));
    expect(refused.httpStatus).toBe(429);
    expect(refused.error?.code).toBe("rate_limit_exceeded");
    expect(refused.error?.message).toMatch(/requests per day/);
    const retryAfter = Number(refused.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThan(590);
    expect(retryAfter).toBeLessThanOrEqual(600);
    expect(refused.headers["x-ratelimit-remaining-requests-day"]).toBe("0");
    offsetMs += retryAfter * 1000;
    const tomorrow = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 10 })));
    expect(tomorrow.allowed).toBe(true);
    expect(tomorrow.responseHeaders["x-ratelimit-remaining-requests-day"]).toBe("4");
  });

  it("tokens per day count what the meter billed, not what admission expected", async () => {
    const { secret, keyId, accountId } = await t.account("pro", { tokensPerDay: 2_000 });
    const first = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 1_500 })));
    expect(first.allowed).toBe(true);
    expect(first.metadata.key_id).toBe(keyId);
    const held = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 1_000 })));
    expect(held.httpStatus).toBe(429);
    expect(held.error?.message).toMatch(/in flight/);
    expect(held.headers["retry-after"]).toBe("1");
    // A request that could never fit the day is told so, without a Retry-After.
    const never = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 2_500 })));
    expect(never.httpStatus).toBe(429);
    expect(never.error?.message).toMatch(/^Request too large for this key's tokens per day: limit 2000/);
    expect(never.headers["retry-after"]).toBeUndefined();
    await bill(first, accountId, { prompt: 10, completion: 5 });
    const after = outcome(await t.authz.check(chat(secret, "gpt-oss-120b", { max_tokens: 1_000 })));
    expect(after.allowed).toBe(true);
    expect(Number(after.responseHeaders["x-ratelimit-remaining-tokens-day"])).toBe(
      2_000 - 15 - (Number(after.metadata.prompt_tokens_estimate) + 1_000),
    );
  });

  it("concurrency: a key limited to 1 in flight gets 429 concurrency_limit_exceeded until the meter sees the first end", async () => {
    const { secret, accountId } = await t.account("pro", { maxConcurrency: 1 });
    const first = outcome(await t.authz.check(chat(secret, "gpt-oss-120b")));
    expect(first.allowed).toBe(true);
    const second = outcome(await t.authz.check(chat(secret, "gpt-oss-120b")));
    expect(second.httpStatus).toBe(429);
    expect(second.error?.code).toBe("concurrency_limit_exceeded");
    expect(second.error?.message).toMatch(/in flight on this key \(limit 1/);
    expect(second.headers["retry-after"]).toBe("1");
    await bill(first, accountId);
    expect(outcome(await t.authz.check(chat(secret, "gpt-oss-120b"))).allowed).toBe(true);
    // A request whose end the meter never sees frees its place after the reservation TTL.
    expect(outcome(await t.authz.check(chat(secret, "gpt-oss-120b"))).httpStatus).toBe(429);
    offsetMs += t.config.meter.reservation_ttl_ms;
    expect(outcome(await t.authz.check(chat(secret, "gpt-oss-120b"))).allowed).toBe(true);
  });
});
