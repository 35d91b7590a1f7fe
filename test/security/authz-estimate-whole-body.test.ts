import { tokenCost } from "../../src/domain/money.js";
import { describe, expect, it } from "vitest";
import { admissionFixture, encodedCheck, MODEL, timedCheck } from "./authz-support.js";

const allow = async (body: Record<string, unknown>) => {
  const { secret, deps } = admissionFixture(10n ** 15n);
  const { verdict } = await timedCheck(encodedCheck(secret, JSON.stringify(body)), deps);
  if (verdict.kind !== "allow") throw new Error(`expected allow, got ${JSON.stringify(verdict)}`);
  return verdict;
};

describe("authz: the prompt estimate covers the whole body, not only messages and tools", () => {
  it("an 800 KB response_format json_schema description is counted in the prompt reservation", async () => {
    const description = "lorem ipsum dolor sit amet ".repeat(30_000);
    const verdict = await allow({
      model: MODEL.id,
      max_tokens: 1,
      messages: [{ role: "user", content: "hi" }],
      response_format: { type: "json_schema", json_schema: { name: "x", description, schema: { type: "object" } } },
    });
    // Every o200k token is at most ~4 characters of such text: the bound must be of the schema's size, not 8.
    expect(verdict.promptTokensEstimate).toBeGreaterThan(description.length / 8);
  });

  it("any other unmodelled top-level member (a string or an object) counts; scalars cost nothing", async () => {
    const filler = "alpha beta gamma delta ".repeat(5_000);
    const base = { model: MODEL.id, max_tokens: 1, messages: [{ role: "user", content: "hi" }] };
    const plain = await allow({ ...base, temperature: 0.5, stream: false, seed: null });
    const withString = await allow({ ...base, instructions: filler });
    const withObject = await allow({ ...base, metadata: { note: filler } });
    expect(withString.promptTokensEstimate - plain.promptTokensEstimate).toBeGreaterThan(filler.length / 8);
    expect(withObject.promptTokensEstimate - plain.promptTokensEstimate).toBeGreaterThan(filler.length / 8);
    expect(plain.promptTokensEstimate).toBe(8);
  });
});

describe("authz: a request with non-text parts reserves the model's whole context window for its prompt", () => {
  const parts: Record<string, unknown> = {
    image_url: { type: "image_url", image_url: { url: "https://example.com/a.png", detail: "high" } },
    file: { type: "file", file: { file_id: "file-abc123" } },
    input_audio: { type: "input_audio", input_audio: { data: "AAAA", format: "wav" } },
    "an unknown type": { type: "video_url", video_url: { url: "https://example.com/v.mp4" } },
  };
  for (const [name, part] of Object.entries(parts)) {
    it(`a ${name} part reserves context window − max output as prompt`, async () => {
      const verdict = await allow({
        model: MODEL.id,
        max_tokens: 100,
        messages: [{ role: "user", content: [{ type: "text", text: "what is this?" }, part] }],
      });
      // Reserved: the whole window (prompt bound = window − max output). The estimate the usage filter bills when a
      // stream loses its usage stays the text's, so a cut-off request is not billed a whole window.
      expect(verdict.reservedTokens).toBe(MODEL.contextWindow);
      expect(verdict.reservedNanos).toBe(
        tokenCost(MODEL.contextWindow - 100, MODEL.prices.input) + tokenCost(100, MODEL.prices.output),
      );
      expect(verdict.promptTokensEstimate).toBeLessThan(100);
    });
  }

  it("text-only parts are still counted exactly", async () => {
    const verdict = await allow({
      model: MODEL.id,
      max_tokens: 100,
      messages: [{ role: "user", content: [{ type: "text", text: "Hello world" }] }],
    });
    expect(verdict.promptTokensEstimate).toBe(9);
  });

  it("when the window can never fit the key's tokens per minute, the 429 says why", async () => {
    const { secret, deps } = admissionFixture(10n ** 15n);
    const snapshot = deps.snapshot();
    const plan = snapshot.plans.get("pro")!;
    const small = { ...snapshot, plans: new Map([["pro", { ...plan, tokensPerMinute: 100_000 }]]) };
    const body = JSON.stringify({
      model: MODEL.id,
      max_tokens: 100,
      messages: [{ role: "user", content: [parts.image_url] }],
    });
    const { verdict } = await timedCheck(encodedCheck(secret, body), { ...deps, snapshot: () => small });
    expect(verdict).toMatchObject({ kind: "deny", code: "rate_limit_exceeded" });
    expect((verdict as { message: string }).message).toMatch(/image, file or audio/);
    expect((verdict as { message: string }).message).toMatch(/context window/);
  });
});
