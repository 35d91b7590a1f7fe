import { once } from "node:events";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { tokenCost, addNanos } from "../../src/domain/money.js";
import { estimateChatPromptTokens } from "../../src/domain/token-estimate.js";
import { admissionFixture, BODY_LIMIT, bodyOfSize, encodedCheck, MODEL, timedCheck } from "./authz-support.js";

/** The CPU a single Check may cost, for any body the data plane passes (bodies under BODY_LIMIT). */
const CHECK_CPU_MS = 50;
const LARGEST = BODY_LIMIT - 1;
const CHAT_OPEN = '{"model":"gpt-5.5","messages":[{"role":"user","content":"';
const CHAT_CLOSE = '"}]}';

describe("authz: admission work is bounded by the body", () => {
  it("a 1 MiB prompt of one repeated character from a key with no credit is refused (402) within 50 ms of CPU", async () => {
    const { secret, deps } = admissionFixture(0n);
    const bodies = [
      bodyOfSize(LARGEST, CHAT_OPEN, "a", CHAT_CLOSE),
      bodyOfSize(LARGEST, CHAT_OPEN, "中", CHAT_CLOSE),
      bodyOfSize(LARGEST, CHAT_OPEN, "xq7Zb", CHAT_CLOSE),
      bodyOfSize(128 * 1024, CHAT_OPEN, "a", CHAT_CLOSE),
    ].map((body) => encodedCheck(secret, body));
    let worst = 0;
    for (let round = 0; round < 3; round++) {
      for (const bytes of bodies) {
        const { verdict, cpuMs } = await timedCheck(bytes, deps);
        expect(verdict).toMatchObject({ kind: "deny", code: "insufficient_credits" });
        worst = Math.max(worst, cpuMs);
      }
    }
    expect(worst).toBeLessThan(CHECK_CPU_MS);
  });

  it("the prompt estimate stays an upper bound (never above the prompt's UTF-8 bytes) and exact for ordinary chat", () => {
    const text = "a".repeat(200_000);
    const estimate = estimateChatPromptTokens({ messages: [{ role: "user", content: text }] });
    expect(estimate).toBeGreaterThanOrEqual(200_000 / 8);
    expect(estimate).toBeLessThanOrEqual(200_000 + 3 + 3 + 4);
    // OpenAI's cookbook figure for this message is 9 (3 per message + "user" + "Hello world" + 3 priming).
    expect(estimateChatPromptTokens({ messages: [{ role: "user", content: "Hello world" }] })).toBe(9);
  });

  it("text that spells a special token ('<|endoftext|>') is counted as text, not a 503", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const body = JSON.stringify({
      model: "gpt-5.5",
      max_tokens: 10,
      messages: [{ role: "user", content: "say <|endoftext|> and <|im_start|>" }],
    });
    const { verdict } = await timedCheck(encodedCheck(secret, body), deps);
    expect(verdict.kind).toBe("allow");
  });
});

describe("authz: the worst case covers every choice (n)", () => {
  const body = (extra: Record<string, unknown>) =>
    JSON.stringify({
      model: "gpt-5.5",
      max_tokens: 1000,
      messages: [{ role: "user", content: "Say hello" }],
      ...extra,
    });
  const prompt = estimateChatPromptTokens({ messages: [{ role: "user", content: "Say hello" }] });
  const worstCost = (choices: number) =>
    addNanos(tokenCost(prompt, MODEL.prices.input), tokenCost(1000 * choices, MODEL.prices.output));

  it("n: 16 reserves 16 × max_tokens of output in credit and in the tokens-per-minute window", async () => {
    const { secret, deps, holds } = admissionFixture(10n ** 12n);
    const { verdict } = await timedCheck(encodedCheck(secret, body({ n: 16 })), deps);
    expect(verdict).toMatchObject({ kind: "allow", reservedTokens: prompt + 16_000, reservedNanos: worstCost(16) });
    expect(holds[0]).toMatchObject({ tokens: prompt + 16_000, amount: worstCost(16) });
  });

  it("a balance that covers one choice but not sixteen is refused 402", async () => {
    const { secret, deps } = admissionFixture(worstCost(1) as bigint);
    expect((await timedCheck(encodedCheck(secret, body({ n: 1 })), deps)).verdict.kind).toBe("allow");
    const { verdict } = await timedCheck(encodedCheck(secret, body({ n: 16 })), deps);
    expect(verdict).toMatchObject({ kind: "deny", code: "insufficient_credits" });
  });

  it("n outside 1..128 (or not an integer) is refused 400 naming 'n'", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    for (const n of [0, -1, 129, 1.5, "2", true]) {
      const { verdict } = await timedCheck(encodedCheck(secret, body({ n })), deps);
      expect(verdict, String(n)).toMatchObject({ kind: "deny", code: "invalid_request", param: "n" });
    }
    expect((await timedCheck(encodedCheck(secret, body({ n: 128 })), deps)).verdict.kind).toBe("allow");
    expect((await timedCheck(encodedCheck(secret, body({ n: null })), deps)).verdict.kind).toBe("allow");
  });

  it("predicted output is in the worst case (rejected predicted tokens bill as output)", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const prediction = { type: "content", content: "word ".repeat(500) };
    const { verdict } = await timedCheck(encodedCheck(secret, body({ prediction })), deps);
    expect(verdict.kind).toBe("allow");
    if (verdict.kind === "allow") expect(verdict.reservedTokens).toBeGreaterThanOrEqual(prompt + 1000 + 500);
  });

  it("output billed above the catalogue's text prices (priority tier, audio) is refused 400, not under-reserved", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ service_tier: "priority" }, "service_tier"],
      [{ modalities: ["text", "audio"], audio: { voice: "alloy", format: "wav" } }, "modalities"],
    ];
    for (const [extra, param] of cases) {
      const { verdict } = await timedCheck(encodedCheck(secret, body(extra)), deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request", param });
    }
    expect((await timedCheck(encodedCheck(secret, body({ service_tier: "auto" })), deps)).verdict.kind).toBe("allow");
  });
});

describe("authz: malformed client input is a 4xx, never a fault", () => {
  it("a chat body nested 10,000 levels deep is refused 400 cheaply", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    for (const nested of ["[".repeat(10_000) + "]".repeat(10_000), '{"a":'.repeat(10_000) + "1" + "}".repeat(10_000)]) {
      const body = `{"model":"gpt-5.5","messages":[{"role":"user","content":"hi","extra":${nested}}]}`;
      const { verdict, cpuMs } = await timedCheck(encodedCheck(secret, body), deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request" });
      expect(cpuMs).toBeLessThan(CHECK_CPU_MS);
    }
    // A 1 MiB body that is all nesting is refused at the 65th level.
    const deepest = bodyOfSize(LARGEST, '{"model":"gpt-5.5","messages":[{"role":"user","content":"x"}],"x":', "[", "");
    const { verdict, cpuMs } = await timedCheck(encodedCheck(secret, deepest), deps);
    expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request" });
    expect(cpuMs).toBeLessThan(CHECK_CPU_MS);
  });

  it("GET /v1/models/%ZZ (a malformed escape) is 404 model_not_found", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const { verdict } = await timedCheck(encodedCheck(secret, new Uint8Array(), "/v1/models/%ZZ", "GET"), deps);
    expect(verdict).toMatchObject({ kind: "deny", code: "model_not_found", param: "model" });
  });

  it("a model name of 1 MiB is refused 404 with a bounded message", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const body = bodyOfSize(LARGEST, '{"messages":[{"role":"user","content":"x"}],"model":"', "m", '"}');
    const { verdict } = await timedCheck(encodedCheck(secret, body), deps);
    expect(verdict).toMatchObject({ kind: "deny", code: "model_not_found" });
    if (verdict.kind === "deny") expect(verdict.message.length).toBeLessThan(400);
  });
});

/** The largest `count` (halving from the one asked) whose body fits under the data plane's limit. */
function fitUnderLimit(count: number, build: (count: number) => string): string {
  for (let n = count; ; n = Math.floor(n / 2)) {
    const body = build(Math.max(1, n));
    if (Buffer.byteLength(body) < BODY_LIMIT || n <= 1) return body;
  }
}

/** Adversarial chat bodies up to the data plane's limit: deep values, huge strings, unicode, many messages and parts. */
function adversarialBody(): fc.Arbitrary<string> {
  const unit = fc.oneof(
    fc.constantFrom(
      "a",
      "中",
      "😀",
      " ",
      "\\n",
      "A",
      "7",
      "!",
      "é",
      "\\u0301",
      "<|endoftext|>",
      "ab cd ",
      '\\"',
      "[",
      "{",
    ),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).map((s) => JSON.stringify(s).slice(1, -1)),
  );
  const count = fc.integer({ min: 1, max: 1_000_000 });
  const kinds: Array<fc.Arbitrary<string>> = [
    fc.tuple(unit, count).map(([u, n]) => fitUnderLimit(n, (k) => `${CHAT_OPEN}${u.repeat(k)}${CHAT_CLOSE}`)),
    fc
      .tuple(fc.constantFrom("[", '{"a":'), fc.integer({ min: 1, max: 200_000 }))
      .map(([open, depth]) =>
        fitUnderLimit(
          depth,
          (k) =>
            `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","tool_calls":${open === "[" ? "[".repeat(k) + "]".repeat(k) : open.repeat(k) + "1" + "}".repeat(k)}}]}`,
        ),
      ),
    fc
      .tuple(unit, count)
      .map(([u, n]) =>
        fitUnderLimit(
          n,
          (k) =>
            `{"model":"gpt-5.5","messages":[${Array.from({ length: k }, () => `{"role":"user","content":"${u}"}`).join(",")}]}`,
        ),
      ),
    fc
      .tuple(unit, count)
      .map(([u, n]) =>
        fitUnderLimit(
          n,
          (k) =>
            `{"model":"gpt-5.5","messages":[{"role":"user","content":[${Array.from({ length: k }, () => `{"type":"text","text":"${u}"}`).join(",")}]}]}`,
        ),
      ),
    count.map((n) =>
      fitUnderLimit(
        n,
        (k) => `{"model":"gpt-5.5","messages":[{"role":"user","content":"x"}],"tools":[${"1.5e300,".repeat(k)}0]}`,
      ),
    ),
    // Many containers: nests at the depth limit side by side, empty objects, one object with many distinct keys.
    fc
      .tuple(fc.integer({ min: 1, max: 60 }), count)
      .map(([depth, n]) =>
        fitUnderLimit(
          n,
          (k) =>
            `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":[${Array.from({ length: k }, () => "[".repeat(depth) + "]".repeat(depth)).join(",")}]}]}`,
        ),
      ),
    count.map((n) =>
      fitUnderLimit(
        n,
        (k) => `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":[${"{},".repeat(k)}{}]}]}`,
      ),
    ),
    fc
      .tuple(fc.integer({ min: 1, max: 40 }), count)
      .map(([width, n]) =>
        fitUnderLimit(
          n,
          (k) =>
            `{"model":"gpt-5.5","messages":[{"role":"user","content":"x","x":{${Array.from({ length: k }, (_, i) => `"${String(i).padStart(width, "k")}":0`).join(",")}}}]}`,
        ),
      ),
    fc
      .tuple(unit, count)
      .map(([u, n]) =>
        fitUnderLimit(
          n,
          (k) =>
            `{"model":"gpt-5.5","messages":[{"role":"system","content":"${u.repeat(k)}"},{"role":"user","name":"${u.repeat(k)}","content":"${u.repeat(k)}"}]}`,
        ),
      ),
  ];
  return fc.oneof(...kinds);
}

/**
 * A worker thread running authz-fuzz-decider.ts (from source: through tsx's loader, registered first), and how to
 * have it decide a body.
 */
async function startDecider() {
  const require = createRequire(import.meta.url);
  const manifest = require("tsx/package.json") as { exports: Record<string, { import: { default: string } }> };
  const tsx = pathToFileURL(
    join(dirname(require.resolve("tsx/package.json")), manifest.exports["./esm/api"]!.import.default),
  ).href;
  const decider = pathToFileURL(join(import.meta.dirname, "authz-fuzz-decider.ts")).href;
  const worker = new Worker(
    `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(decider)}); })`,
    { eval: true },
  );
  // The worker's next message; its exit or error fails the wait instead of leaving it pending.
  const next = async (): Promise<unknown> => {
    const stopped = new AbortController();
    try {
      return await Promise.race([
        once(worker, "message", { signal: stopped.signal }).then(([message]) => message),
        once(worker, "error", { signal: stopped.signal }).then(([error]) => Promise.reject(error)),
        once(worker, "exit", { signal: stopped.signal }).then(([code]) =>
          Promise.reject(new Error(`the fuzz decider exited (${code})`)),
        ),
      ]);
    } finally {
      stopped.abort();
    }
  };
  try {
    expect(await next()).toBe("ready");
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  return {
    async decide(body: string, rich: boolean) {
      worker.postMessage({ body, rich });
      const answer = (await next()) as { decisions?: Array<{ outcome: string; cpuMs: number }>; error?: string };
      if (answer.error !== undefined) throw new Error(`deciding threw: ${answer.error}`);
      return answer.decisions!;
    },
    stop: () => worker.terminate(),
  };
}

describe("authz: fuzzed bodies up to the body limit", () => {
  // Each body is decided on a worker thread, as the authz process reads large bodies (the chat-reader pool), in an
  // isolate that holds admission and not the test runner; its CPU is the process' (every thread's) meanwhile.
  it("every Check decides within 50 ms of CPU and none is a 503 or a throw", async () => {
    const worst = [0, 0];
    const worstBody = ["", ""];
    const decider = await startDecider();
    try {
      await fc.assert(
        fc.asyncProperty(
          adversarialBody().map((body) => ({
            body,
            [fc.toStringMethod]: () => `${body.slice(0, 120)}… (${Buffer.byteLength(body)} bytes)`,
          })),
          fc.boolean(),
          async ({ body }, rich) => {
            // The first decision of each body is measured (nothing about it is cached yet), and the second.
            for (const [sight, { outcome, cpuMs }] of (await decider.decide(body, rich)).entries()) {
              expect(outcome).not.toBe("unavailable");
              expect(cpuMs, sight === 0 ? "first decision" : "second decision").toBeLessThan(CHECK_CPU_MS);
              if (cpuMs > worst[sight]!) {
                worst[sight] = cpuMs;
                worstBody[sight] = `${body.slice(0, 90)}… (${Buffer.byteLength(body)} bytes)`;
              }
            }
          },
        ),
        { numRuns: 80 },
      );
    } finally {
      await decider.stop();
    }
    console.log(
      `fuzzed Checks: worst CPU ${worst[0]!.toFixed(1)} ms on a body's first decision (${worstBody[0]}), ${worst[1]!.toFixed(1)} ms on its second (${worstBody[1]})`,
    );
  }, 180_000);
});
