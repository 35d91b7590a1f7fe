import { describe, expect, it } from "vitest";
import { estimateChatPromptTokens } from "../../../src/domain/token-estimate.js";
import { bearer, chat, check, checkFixture, clock, useCheckPlane } from "./setup.js";
import { OVERWRITE } from "../../support/authz-client.js";

const plane = useCheckPlane();

describe("200: allowed requests", () => {
  it("allows a chat completion and mutates exactly the headers the data plane routes by", async () => {
    const { secret, accountId, keyId } = await plane().account("pro");
    const res = await checkFixture(plane(), "chat-completion.json", { KEY: secret });
    expect(res.allowed).toBe(true);
    expect(res.grpcCode).toBe(0);
    expect(res.headers).toEqual({
      ":path": "/v1/chat/completions",
      authorization: "Bearer mock-openai",
      "x-tollgate-provider": "openai",
      "x-tollgate-upstream-model": "gpt-5.5",
    });
    expect(res.headersToRemove).toEqual([]);
    // Every header mutation says OVERWRITE_IF_EXISTS_OR_ADD in append_action and leaves the deprecated append out:
    // Envoy 1.31+ replaces (an unset append reads as false before 1.37; append_action wins from then on).
    expect(res.headerModes.length).toBeGreaterThan(0);
    expect(new Set(res.headerModes)).toEqual(new Set([OVERWRITE]));
    const decisionId = res.responseHeaders["x-tollgate-decision-id"];
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);

    const prompt = estimateChatPromptTokens({ messages: [{ role: "user", content: "Say hello" }] });
    // gpt-5.5 example prices: input 5, cached 0.5, output 30 USD per million tokens = pico-USD per token × 1e6.
    expect(res.metadata).toEqual({
      decision_id: decisionId,
      account_id: accountId,
      key_id: keyId,
      model: "gpt-5.5",
      upstream_model: "gpt-5.5",
      provider: "openai",
      price_input: "5000000",
      price_cached_input: "500000",
      price_output: "30000000",
      reserved_tokens: prompt + 64,
      reserved_nanos: String((BigInt(prompt) * 5_000_000n + 64n * 30_000_000n + 999n) / 1000n),
      prompt_tokens_estimate: prompt,
      max_output_tokens: 64,
      stream: false,
      // HMAC over the billing fields; test/security/meter-forgery.test.ts proves the meter bills only what verifies.
      sig: expect.stringMatching(/^v1\.[A-Za-z0-9_-]{43}$/),
    });
  });

  it("reads raw_body bytes, keeps the query across the provider path rewrite, and strips client x-tollgate-* headers", async () => {
    const { secret } = await plane().account("basic");
    const res = await checkFixture(plane(), "chat-completion-raw-body.json", { KEY: secret });
    expect(res.allowed).toBe(true);
    expect(res.headers).toEqual({
      ":path": "/v1beta/openai/chat/completions?trace=1",
      authorization: "Bearer mock-google",
      // The client's x-tollgate-provider: anthropic is overwritten, never trusted.
      "x-tollgate-provider": "google",
      "x-tollgate-upstream-model": "gemini-2.5-flash-lite",
      "x-tollgate-stream": "1",
    });
    expect(res.headersToRemove).toEqual(["x-tollgate-debug"]);
    expect(res.metadata.stream).toBe(true);
    // No max_tokens: the reservation takes the model's output cap from the catalogue.
    expect(res.metadata.max_output_tokens).toBe(65536);
  });

  it("rewrites to each provider's base path", async () => {
    const { secret } = await plane().account("scale");
    const paths: Record<string, string> = {
      "gpt-5.5": "/v1/chat/completions",
      "claude-opus-4.8": "/v1/chat/completions",
      "gemini-3.1-pro": "/v1beta/openai/chat/completions",
      "deepseek-v4-flash": "/chat/completions",
    };
    for (const [model, path] of Object.entries(paths)) {
      const res = await check(plane(), { headers: bearer(secret), body: chat(model) });
      expect(res.headers[":path"], model).toBe(path);
    }
  });

  it("accepts the header_map encoding (encode_raw_headers) as well as the headers map", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), { headers: bearer(secret), body: chat(), rawHeaders: true });
    expect(res.allowed).toBe(true);
  });

  it("accepts the Bearer scheme in any case and with extra spaces", async () => {
    const { secret } = await plane().account("pro");
    for (const value of [`bearer ${secret}`, `BEARER ${secret}`, `bEaReR   ${secret}`, `Bearer ${secret}  `]) {
      const res = await check(plane(), { headers: { authorization: value }, body: chat() });
      expect(res.allowed, JSON.stringify(value.replace(secret, "KEY"))).toBe(true);
    }
  });

  it("ignores a 1 MB value in an unrelated header", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), {
      headers: { ...bearer(secret), "x-big": "a".repeat(1024 * 1024) },
      body: chat(),
    });
    expect(res.allowed).toBe(true);
  });

  it("prefers max_completion_tokens over max_tokens for the reservation", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), {
      headers: bearer(secret),
      body: chat("gpt-5.5", { max_tokens: 10, max_completion_tokens: 20 }),
    });
    expect(res.metadata.max_output_tokens).toBe(20);
  });

  it("answers GET /v1/models with exactly the models the key may use", async () => {
    const basic = await plane().account("basic");
    const res = await checkFixture(plane(), "models-list.json", { KEY: basic.secret });
    expect(res.httpStatus).toBe(200);
    const ids = JSON.parse(res.body).data.map((m: { id: string }) => m.id);
    expect(ids).toEqual(["claude-haiku-4.5", "gpt-oss-120b", "gemini-2.5-flash-lite", "deepseek-v4-flash"]);

    const scoped = await plane().account("pro", { allowedModels: ["gpt-5.5", "claude-haiku-4.5"] });
    const scopedRes = await check(plane(), { method: "GET", path: "/v1/models", headers: bearer(scoped.secret) });
    expect(JSON.parse(scopedRes.body).data.map((m: { id: string }) => m.id)).toEqual(["claude-haiku-4.5", "gpt-5.5"]);

    const one = await check(plane(), { method: "GET", path: "/v1/models/gpt-5.5", headers: bearer(scoped.secret) });
    expect(JSON.parse(one.body)).toEqual({ id: "gpt-5.5", object: "model", created: 0, owned_by: "openai" });
  });

  it("keeps a rotated key's old secret valid through its grace period only", async () => {
    const { secret, keyId } = await plane().account("pro");
    const rotated = await plane().plane.keys.rotate(keyId, 60_000);
    expect((await check(plane(), { headers: bearer(secret), body: chat() })).allowed).toBe(true);
    expect((await check(plane(), { headers: bearer(rotated.secret), body: chat() })).allowed).toBe(true);
    clock.now += 60_001;
    try {
      const old = await check(plane(), { headers: bearer(secret), body: chat() });
      expect(old.httpStatus).toBe(401);
      expect(old.error?.code).toBe("invalid_api_key");
      expect((await check(plane(), { headers: bearer(rotated.secret), body: chat() })).allowed).toBe(true);
    } finally {
      clock.now -= 60_001;
    }
  });
});
