import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createDecisionSigner, createDecisionVerifier } from "../../src/dataplane/signing/decision-signature.js";

const metadata = (model: string) => ({
  decision_id: "dé-1",
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
  stream: true,
});
const canonical = (model: string) =>
  `v1|4:dé-1|6:acct_1|5:key_1|${model.length}:${model}|6:openai|7:1250000|6:125000|8:10000000|4:5000|9:123456789|3:120|1:1`;

describe("decision signature", () => {
  // The one-shot pads must be exactly RFC 2104 HMAC-SHA256: secrets shorter than, equal to and longer than the
  // 64-byte block, and messages that fit the prepared room and that do not.
  for (const secret of ["s".repeat(32), "b".repeat(64), "L".repeat(100)]) {
    for (const model of ["gpt-5.5", "é".repeat(3000)]) {
      it(`is HMAC-SHA256 of the canonical fields (secret ${secret.length} bytes, model ${model.length} chars)`, () => {
        const expected = `v1.${createHmac("sha256", secret).update(canonical(model), "utf8").digest("base64url")}`;
        expect(createDecisionSigner(secret).signMetadata(metadata(model))).toBe(expected);
        expect(createDecisionVerifier(secret).verify({ ...metadata(model), sig: expected })).toBe(true);
        expect(
          createDecisionVerifier(secret).verify({ ...metadata(model), reserved_tokens: 5001, sig: expected }),
        ).toBe(false);
      });
    }
  }
});
