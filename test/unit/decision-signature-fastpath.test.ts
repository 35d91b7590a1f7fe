import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createDecisionSigner, createDecisionVerifier } from "../../src/dataplane/signing/decision-signature.js";

// Review of 72f439c/07d2fb7: the prepared inner pad is reused for every message, with a cached view per UTF-8 length
// and a fast path chosen by UTF-16 length. Messages of every length around the room (1024 bytes), in every UTF-8
// width (1-3 bytes, surrogate pairs, lone surrogates), alternating long and short on the same key, must stay exactly
// RFC 2104 HMAC-SHA256 of the canonical text, and the signer's cached model part must equal the canonical form.
const PIECES = ["a", "é", "€", "😀", "\ud800", "\udc00", "|", ":", "9"];

function randomText(rng: () => number, units: number): string {
  let s = "";
  while (s.length < units) s += PIECES[Math.floor(rng() * PIECES.length)]!;
  return s.slice(0, units);
}

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const fields = (model: string, decision: string) => ({
  decision_id: decision,
  account_id: "acct_1",
  key_id: "key_1",
  model,
  provider: "openai",
  price_input: "1250000",
  price_cached_input: "125000",
  price_output: "10000000",
  reserved_tokens: 5000,
  reserved_nanos: "123456789",
  prompt_tokens_estimate: 120,
  stream: false,
});
const canonical = (m: ReturnType<typeof fields>) =>
  `v1${[m.decision_id, m.account_id, m.key_id, m.model, m.provider, m.price_input, m.price_cached_input, m.price_output, String(m.reserved_tokens), m.reserved_nanos, String(m.prompt_tokens_estimate), m.stream ? "1" : "0"].map((v) => `|${v.length}:${v}`).join("")}`;

describe("decision signature fast path", () => {
  for (const secret of ["s".repeat(32), "L".repeat(100)]) {
    it(`equals createHmac for messages around the room, alternating lengths (secret ${secret.length} bytes)`, () => {
      const signer = createDecisionSigner(secret);
      const verifier = createDecisionVerifier(secret);
      const rng = mulberry32(secret.length);
      for (let i = 0; i < 3000; i++) {
        const units = i % 3 === 0 ? Math.floor(rng() * 1200) : 200 + Math.floor(rng() * 260);
        const m = fields(randomText(rng, units), randomText(rng, Math.floor(rng() * 40)));
        const expected = `v1.${createHmac("sha256", secret).update(canonical(m), "utf8").digest("base64url")}`;
        expect(signer.signMetadata(m)).toBe(expected);
        expect(verifier.verify({ ...m, sig: expected })).toBe(true);
      }
    });
  }

  it("sign(admission) equals signMetadata of what authz writes, the model part cached per model object", () => {
    const signer = createDecisionSigner("k".repeat(40));
    const model = {
      id: "gpt-é😀",
      provider: "openai",
      prices: { input: 1250000n, cachedInput: 125000n, output: 10000000n },
    };
    for (const decisionId of ["d1", "dé", "\ud800x"]) {
      const a = {
        decisionId,
        accountId: "acct_1",
        keyId: "key_1",
        model,
        reservedTokens: 5000,
        reservedNanos: 123456789n,
        promptTokensEstimate: 120,
        stream: true,
      };
      // biome-ignore lint/suspicious/noExplicitAny: only the fields the signer reads
      const sig = signer.sign(a as any);
      const m = { ...fields(model.id, decisionId), stream: true };
      expect(sig).toBe(signer.signMetadata(m));
    }
  });
});
