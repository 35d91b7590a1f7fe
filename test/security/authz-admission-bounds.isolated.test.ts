// CPU-time bounds on single Checks: run alone after the other suites (`*.isolated.test.ts`), as the fuzz is; beside
// the parallel suites the first decision of a 1 MiB body read 53 ms once (bound 50). Measured as the fuzz measures:
// after the Check path is compiled (as in a serving process), each decision on a clean heap. Measured cold, in CI, the
// first of them once read 50.8 ms alone, where it reads 7-19 ms here; the defect these cases guard against (a
// tokeniser superlinear in a repeated character) costs seconds.
import { describe, expect, it } from "vitest";
import { tokenCost, addNanos } from "../../src/domain/money.js";
import { estimateChatPromptTokens } from "../../src/domain/token-estimate.js";
import {
  admissionFixture,
  BODY_LIMIT,
  bodyOfSize,
  CHAT_CLOSE,
  CHAT_OPEN,
  cleanTimedCheck,
  collectGarbage,
  encodedCheck,
  MODEL,
  timedCheck,
  warmUpAdmission,
} from "./authz-support.js";

/** The CPU a single Check may cost, for any body the data plane passes (bodies under BODY_LIMIT). */
const CHECK_CPU_MS = 50;
const LARGEST = BODY_LIMIT - 1;

describe("authz: admission work is bounded by the body", () => {
  it("a 1 MiB prompt of one repeated character from a key with no credit is refused (402) within 50 ms of CPU", async () => {
    const { secret, deps } = admissionFixture(0n);
    await warmUpAdmission(secret, deps);
    const bodies = [
      bodyOfSize(LARGEST, CHAT_OPEN, "a", CHAT_CLOSE),
      bodyOfSize(LARGEST, CHAT_OPEN, "中", CHAT_CLOSE),
      bodyOfSize(LARGEST, CHAT_OPEN, "xq7Zb", CHAT_CLOSE),
      bodyOfSize(128 * 1024, CHAT_OPEN, "a", CHAT_CLOSE),
    ].map((body) => encodedCheck(secret, body));
    let worst = 0;
    for (let round = 0; round < 3; round++) {
      for (const bytes of bodies) {
        const { verdict, cpuMs } = await cleanTimedCheck(bytes, deps);
        expect(verdict).toMatchObject({ kind: "deny", code: "insufficient_credits" });
        worst = Math.max(worst, cpuMs);
      }
    }
    console.log(`1 MiB refused prompts: worst CPU ${worst.toFixed(1)} ms per Check`);
    expect(worst).toBeLessThan(CHECK_CPU_MS);
  });

  it("twenty 1 MiB prompts back to back, their garbage collected within the measurement, cost under 50 ms of CPU each", async () => {
    // The clean-heap case above leaves each body's garbage to the next collection, outside its measurement: here the
    // decisions follow one another as an attacker sends them, and the collection of all they left is counted.
    const { secret, deps } = admissionFixture(0n);
    await warmUpAdmission(secret, deps);
    const bodies = ["a", "中", "xq7Zb"].map((unit) =>
      encodedCheck(secret, bodyOfSize(LARGEST, CHAT_OPEN, unit, CHAT_CLOSE)),
    );
    const checks = 20;
    collectGarbage();
    const started = process.cpuUsage();
    for (let i = 0; i < checks; i++) {
      const { verdict } = await timedCheck(bodies[i % bodies.length]!, deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "insufficient_credits" });
    }
    collectGarbage();
    const spent = process.cpuUsage(started);
    const perCheck = (spent.user + spent.system) / 1000 / checks;
    console.log(`1 MiB refused prompts back to back: ${perCheck.toFixed(1)} ms of CPU per Check, collection included`);
    expect(perCheck).toBeLessThan(CHECK_CPU_MS);
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
    await warmUpAdmission(secret, deps);
    for (const nested of ["[".repeat(10_000) + "]".repeat(10_000), '{"a":'.repeat(10_000) + "1" + "}".repeat(10_000)]) {
      const body = `{"model":"gpt-5.5","messages":[{"role":"user","content":"hi","extra":${nested}}]}`;
      const { verdict, cpuMs } = await cleanTimedCheck(encodedCheck(secret, body), deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request" });
      expect(cpuMs).toBeLessThan(CHECK_CPU_MS);
    }
    // A 1 MiB body that is all nesting is refused at the 65th level.
    const deepest = bodyOfSize(LARGEST, '{"model":"gpt-5.5","messages":[{"role":"user","content":"x"}],"x":', "[", "");
    const { verdict, cpuMs } = await cleanTimedCheck(encodedCheck(secret, deepest), deps);
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
