import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  mintWebhookSecret,
  signatureHeader,
  verifyWebhookSignature,
  WEBHOOK_SIGNATURE_TOLERANCE_S,
} from "../../src/domain/webhook-signature.js";

const body = '{"id":"evt_1","type":"key.revoked","created":"2026-12-01T00:00:00.000Z","account_id":"acct_1","data":{}}';
const now = 1_764_547_200_000;

describe("webhook signatures (Tollgate-Signature: t=…,v1=…)", () => {
  it("mints whsec_ secrets of 32 random bytes, never twice the same", () => {
    const a = mintWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(mintWebhookSecret()).not.toBe(a);
  });

  it('signs HMAC-SHA256(secret, t + "." + body) in hex, as the README tells receivers to check it', () => {
    const secret = mintWebhookSecret();
    const header = signatureHeader(secret, body, now);
    const t = Math.floor(now / 1000);
    const hex = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
    expect(header).toBe(`t=${t},v1=${hex}`);
    expect(verifyWebhookSignature({ secret, body, header, now })).toEqual({ valid: true, timestamp: t });
  });

  it("refuses a changed body, another secret, a stale or future timestamp and malformed headers", () => {
    const secret = mintWebhookSecret();
    const header = signatureHeader(secret, body, now);
    expect(verifyWebhookSignature({ secret, body: body.replace("evt_1", "evt_2"), header, now })).toEqual({
      valid: false,
      reason: "mismatch",
    });
    expect(verifyWebhookSignature({ secret: mintWebhookSecret(), body, header, now }).valid).toBe(false);
    const late = now + (WEBHOOK_SIGNATURE_TOLERANCE_S + 1) * 1000;
    expect(verifyWebhookSignature({ secret, body, header, now: late })).toEqual({ valid: false, reason: "stale" });
    const early = now - (WEBHOOK_SIGNATURE_TOLERANCE_S + 1) * 1000;
    expect(verifyWebhookSignature({ secret, body, header, now: early })).toEqual({ valid: false, reason: "stale" });
    for (const bad of ["", "v1=abc", "t=abc,v1=00", `t=${Math.floor(now / 1000)}`, "t=1,v1=zz"])
      expect(verifyWebhookSignature({ secret, body, header: bad, now }).valid).toBe(false);
  });

  it("accepts any of several v1 signatures (a receiver keeps working through a secret change)", () => {
    const secret = mintWebhookSecret();
    const t = Math.floor(now / 1000);
    const good = signatureHeader(secret, body, now).split("v1=")[1];
    const header = `t=${t},v1=${"0".repeat(64)},v1=${good}`;
    expect(verifyWebhookSignature({ secret, body, header, now }).valid).toBe(true);
  });
});
