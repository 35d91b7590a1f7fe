import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** The header every delivery carries: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */
export const WEBHOOK_SIGNATURE_HEADER = "tollgate-signature";
/** How far a signature's timestamp may be from the receiver's clock before it counts as a replay (seconds). */
export const WEBHOOK_SIGNATURE_TOLERANCE_S = 300;

/** A new webhook signing secret: `whsec_` + 32 random bytes (base64url); shown once, kept to sign deliveries. */
export function mintWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

const hmacHex = (secret: string, t: number, body: string) =>
  createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");

/**
 * The Tollgate-Signature value for `body` sent at `now` (ms). The timestamp is signed with the body, so a captured
 * delivery cannot be replayed later than the receiver's tolerance.
 */
export function signatureHeader(secret: string, body: string, now: number): string {
  const t = Math.floor(now / 1000);
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

/** A signature check's verdict. */
export type SignatureVerdict =
  | { valid: true; timestamp: number }
  | { valid: false; reason: "malformed" | "stale" | "mismatch" };

/**
 * Verifies a Tollgate-Signature header the way a receiver should (the README shows the same steps in other
 * languages): split on ',', take `t` and every `v1`, refuse a timestamp more than `toleranceS` from now, and compare
 * HMAC-SHA256(secret, `${t}.${raw body}`) in constant time with each v1. The body must be the raw bytes received.
 */
export function verifyWebhookSignature(input: {
  secret: string;
  body: string;
  header: string;
  now?: number;
  toleranceS?: number;
}): SignatureVerdict {
  let t: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of input.header.split(",")) {
    const eq = part.indexOf("=");
    const [k, v] = [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
    if (k === "t" && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === "v1" && /^[0-9a-f]{64}$/.test(v)) signatures.push(Buffer.from(v, "hex"));
  }
  if (t === undefined || signatures.length === 0) return { valid: false, reason: "malformed" };
  const now = Math.floor((input.now ?? Date.now()) / 1000);
  if (Math.abs(now - t) > (input.toleranceS ?? WEBHOOK_SIGNATURE_TOLERANCE_S)) return { valid: false, reason: "stale" };
  const expected = Buffer.from(hmacHex(input.secret, t, input.body), "hex");
  return signatures.some((s) => timingSafeEqual(s, expected))
    ? { valid: true, timestamp: t }
    : { valid: false, reason: "mismatch" };
}
