import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { encodeAllow, toCheckResponse, type ResponseContext } from "../../src/dataplane/authz/check-response.js";
import type { Admission } from "../../src/domain/verdict.js";
import { nanos, picoPerToken } from "../../src/domain/money.js";
import { createDecisionSigner, createDecisionVerifier } from "../../src/dataplane/signing/decision-signature.js";

const SECRET = "check-encoding-signing-secret-0123456789";
const signer = createDecisionSigner(SECRET);
const verifier = createDecisionVerifier(SECRET);

function admission(overrides: Partial<Admission> = {}): Admission {
  const prices = {
    input: picoPerToken(5_000_000n),
    cachedInput: picoPerToken(500_000n),
    output: picoPerToken(30_000_000n),
  };
  return {
    kind: "allow",
    decisionId: "9b1c7a4e-0000-4000-8000-000000000001",
    accountId: "acct_1",
    keyId: "key_1",
    model: {
      id: "gpt-5.5",
      displayName: "GPT-5.5",
      provider: "openai",
      upstreamModel: "gpt-5.5",
      tier: "premium",
      prices,
      contextWindow: 1,
      maxOutputTokens: 10,
      retired: false,
    },
    stream: false,
    promptTokensEstimate: 12,
    maxOutputTokens: 64,
    reservedTokens: 76,
    reservedNanos: nanos(1980n),
    ...overrides,
  };
}

const context = (extra: Partial<ResponseContext> = {}): ResponseContext => ({
  tollgateHeaders: [],
  query: "",
  provider: { basePath: "/v1", authorization: "Bearer sk-upstream" },
  signer,
  ...extra,
});

describe("encodeAllow: the allow fast path encodes the same CheckResponse as the message path", () => {
  const cases: Array<[string, Admission, ResponseContext]> = [
    ["plain", admission(), context()],
    [
      "stream with rate-limit headers",
      admission({
        stream: true,
        rateLimit: {
          requests: { limit: 60, remaining: 59, resetSeconds: 60 },
          tokens: { limit: 1000, remaining: 924, resetSeconds: 60 },
        },
      }),
      context(),
    ],
    ["query string kept across the rewrite", admission(), context({ query: "trace=1" })],
    [
      "client x-tollgate headers removed",
      admission({ decisionId: "other-id" }),
      context({ tollgateHeaders: ["x-tollgate-provider", "x-tollgate-debug", "x-tollgate-stream"] }),
    ],
    [
      "client x-tollgate-stream kept (overwritten) on a stream",
      admission({ stream: true }),
      context({ tollgateHeaders: ["x-tollgate-stream", "x-tollgate-debug"] }),
    ],
    [
      "another provider",
      admission({
        model: {
          ...admission().model,
          id: "gemini-3.1-pro",
          provider: "google",
          upstreamModel: "gemini-3.1-pro-preview",
        },
      }),
      context({ provider: { basePath: "/v1beta/openai", authorization: "Bearer g" } }),
    ],
  ];
  for (const [name, a, ctx] of cases) {
    it(name, () => {
      const expected = toCheckResponse(a, ctx);
      // Twice: the second call is served from the header cache.
      for (let i = 0; i < 2; i++) {
        const decoded = fromBinary(CheckResponseSchema, encodeAllow(a, ctx));
        expect(decoded).toEqual(fromBinary(CheckResponseSchema, toBinary(CheckResponseSchema, expected)));
      }
    });
  }

  it("removes a client's x-tollgate-stream from a request that is not a stream", () => {
    const res = fromBinary(
      CheckResponseSchema,
      encodeAllow(admission(), context({ tollgateHeaders: ["x-tollgate-stream", "x-tollgate-provider"] })),
    );
    expect(res.httpResponse.case === "okResponse" && res.httpResponse.value.headersToRemove).toEqual([
      "x-tollgate-stream",
    ]);
  });

  it("writes every header option as header then append_action OVERWRITE_IF_EXISTS_OR_ADD, with no deprecated append", () => {
    // HeaderValueOption{header = 1: HeaderValue{key = 1, value = 2}, append = 2: BoolValue, append_action = 3: enum}:
    // the header field (tag 0x0a), then append_action (tag 0x18) = 2, and never a tag 0x12 (append).
    const option = (key: string, value: string) => {
      const header = [0x0a, key.length, ...Buffer.from(key), 0x12, value.length, ...Buffer.from(value)];
      return Buffer.from([0x0a, header.length, ...header, 0x18, 2]);
    };
    const a = admission();
    for (const bytes of [
      Buffer.from(encodeAllow(a, context())),
      Buffer.from(toBinary(CheckResponseSchema, toCheckResponse(a, context()))),
    ]) {
      expect(bytes.includes(option(":path", "/v1/chat/completions"))).toBe(true);
      expect(bytes.includes(option("x-tollgate-decision-id", a.decisionId))).toBe(true);
      const ok = fromBinary(CheckResponseSchema, bytes).httpResponse;
      if (ok.case !== "okResponse") throw new Error("not an allow");
      for (const h of [...ok.value.headers, ...ok.value.responseHeadersToAdd]) {
        expect(h.append, h.header?.key).toBeUndefined();
        expect(h.appendAction, h.header?.key).toBe(2);
      }
    }
  });

  it("does not serve one route's cached headers to another", () => {
    const a = fromBinary(CheckResponseSchema, encodeAllow(admission(), context()));
    const b = fromBinary(CheckResponseSchema, encodeAllow(admission({ stream: true }), context()));
    expect(a).not.toEqual(b);
  });
});

describe("encodeAllow on arbitrary values", () => {
  it("decodes to the message path's CheckResponse for random ids, header names, limits and prices", async () => {
    const fc = (await import("fast-check")).default;
    fc.assert(
      fc.property(
        fc.string({ unit: "binary" }),
        fc.string({ unit: "grapheme" }),
        fc.array(
          fc.string({ unit: "binary" }).map((s) => `x-tollgate-${s}`),
          { maxLength: 3 },
        ),
        fc.boolean(),
        fc.nat(),
        fc.nat({ max: 2 ** 31 }),
        fc.option(fc.record({ limit: fc.nat(), remaining: fc.nat(), resetSeconds: fc.nat({ max: 60 }) }), {
          nil: undefined,
        }),
        fc.bigInt({ min: 0n, max: 2n ** 62n }),
        (decisionId, accountId, clientHeaders, stream, estimate, maxOut, window, reserved) => {
          const a = admission({
            decisionId,
            accountId,
            stream,
            promptTokensEstimate: estimate,
            maxOutputTokens: maxOut,
            reservedTokens: estimate + maxOut,
            reservedNanos: nanos(reserved),
            rateLimit: window ? { requests: window, tokens: { ...window, limit: window.limit * 1000 } } : undefined,
          });
          const ctx = context({ tollgateHeaders: clientHeaders });
          const fast = fromBinary(CheckResponseSchema, encodeAllow(a, ctx));
          const slow = fromBinary(CheckResponseSchema, toBinary(CheckResponseSchema, toCheckResponse(a, ctx)));
          expect(fast).toEqual(slow);
          // What the meter reads back verifies: the signature covers the values as the wire carries them.
          expect(verifier.verify(fast.dynamicMetadata as Record<string, unknown>)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
