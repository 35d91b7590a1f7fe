import { hash, timingSafeEqual } from "node:crypto";
import type { Admission } from "../../domain/verdict.js";
import { AUTHZ_METADATA_KEYS as K } from "../../contract/index.js";

// The meter bills whatever reaches it, so what authz writes into the ext_authz metadata is signed: an HMAC-SHA256,
// with a secret only authz and the meter hold, over exactly the fields billing reads. An access-log entry whose
// signature does not verify (forged, altered, or signed with a secret the meter does not know) is never billed.

/** Version prefix of the signature value; a change of the canonical form gets a new one. */
const VERSION = "v1";
/** Shortest secret accepted, in bytes (as long as the HMAC-SHA256 output). */
export const MIN_SECRET_BYTES = 32;

/**
 * The signed metadata fields, in canonical order. Each is rendered as the text the meter reads back (numbers in
 * their shortest decimal form, `stream` as 1 or 0) and length-prefixed, so no value can spill into the next.
 */
export const SIGNED_FIELDS = [
  K.decisionId,
  K.accountId,
  K.keyId,
  K.model,
  K.provider,
  K.priceInput,
  K.priceCachedInput,
  K.priceOutput,
  K.reservedTokens,
  K.reservedNanos,
  K.promptTokensEstimate,
  K.stream,
] as const;

/** A secret that is too short to sign with; the message says which one. */
export class SigningSecretError extends Error {
  override name = "SigningSecretError";
}

/** An HMAC-SHA256 key: its inner and outer pads (RFC 2104), prepared once. */
interface MacKey {
  /** The inner pad, followed by room for the message. */
  inner: Buffer;
  /** The outer pad, followed by room for the inner digest. */
  outer: Buffer;
  /** Views of `inner` holding the pad and a message of each length seen so far (a view per call costs more). */
  innerViews: Buffer[];
}

const BLOCK = 64;
const DIGEST = 32;
/** Message bytes the prepared inner pad has room for; longer messages take the slow path. */
const ROOM = 1024;

function keyOf(secret: string | Uint8Array, what: string): MacKey {
  const bytes = typeof secret === "string" ? Buffer.from(secret, "utf8") : Buffer.from(secret);
  if (bytes.length < MIN_SECRET_BYTES)
    throw new SigningSecretError(`${what} must be at least ${MIN_SECRET_BYTES} bytes (it has ${bytes.length})`);
  const block = bytes.length > BLOCK ? hash("sha256", bytes, "buffer") : bytes;
  const inner = Buffer.alloc(BLOCK + ROOM, 0x36);
  const outer = Buffer.alloc(BLOCK + DIGEST, 0x5c);
  for (let i = 0; i < block.length; i++) {
    inner[i]! ^= block[i]!;
    outer[i]! ^= block[i]!;
  }
  return { inner, outer, innerViews: [] };
}

/** One value of the canonical text: length-prefixed, so no value can spill into the next. */
const field = (v: string) => `|${v.length}:${v}`;

function canonical(values: readonly string[]): string {
  let out = VERSION;
  for (const v of values) out += field(v);
  return out;
}

/**
 * HMAC-SHA256 (RFC 2104) as base64url, with Node's one-shot hash over pads prepared once: a createHmac object per
 * allowed Check cost the served hot path several times its microbenchmark (a native object per call for the GC to
 * finalise). Digests travel as binary (latin1) and base64url strings: in Node 20 a one-shot hash returning a Buffer costs
 * three times one returning a string.
 */
function mac(key: MacKey, text: string): string {
  let inner: string;
  // A UTF-16 unit is at most 3 UTF-8 bytes: a text this short always fits the room.
  if (text.length * 3 <= ROOM) {
    const length = key.inner.write(text, BLOCK, "utf8");
    const view = (key.innerViews[length] ??= key.inner.subarray(0, BLOCK + length));
    inner = hash("sha256", view, "binary");
  } else {
    inner = hash("sha256", Buffer.concat([key.inner.subarray(0, BLOCK), Buffer.from(text, "utf8")]), "binary");
  }
  key.outer.write(inner, BLOCK, "binary");
  return hash("sha256", key.outer, "base64url");
}

/** Signs an admission's billing fields; authz puts the result in the metadata's `sig` field. */
export interface DecisionSigner {
  sign(a: Admission): string;
  /** Signs metadata already rendered (tools and tests that build entries); undefined when a field has a wrong type. */
  signMetadata(authz: Record<string, unknown>): string | undefined;
}

/** Checks an access-log entry's ext_authz namespace against its `sig`. */
export interface DecisionVerifier {
  /** True only when `sig` is an HMAC, under the current or a previous secret, of exactly these billing fields. */
  verify(authz: Record<string, unknown>): boolean;
}

/** The signer authz uses: one HMAC per allowed Check over the admission's values, no JSON in between. */
export function createDecisionSigner(secret: string | Uint8Array): DecisionSigner {
  const key = keyOf(secret, "signing.secret");
  // The model's part of the canonical text (id, provider, prices) per model object: a catalogue reload makes new
  // objects, so new prices are never signed stale.
  const modelParts = new WeakMap<Admission["model"], string>();
  const modelPart = (m: Admission["model"]) => {
    let part = modelParts.get(m);
    if (part === undefined) {
      const { input, cachedInput, output } = m.prices;
      part = field(m.id) + field(m.provider) + field(input.toString());
      part += field(cachedInput.toString()) + field(output.toString());
      modelParts.set(m, part);
    }
    return part;
  };
  return {
    sign(a) {
      // canonical() of the fields in SIGNED_FIELDS order, built without an intermediate array.
      let text = VERSION + field(a.decisionId) + field(a.accountId) + field(a.keyId) + modelPart(a.model);
      text += field(String(a.reservedTokens)) + field(a.reservedNanos.toString());
      text += field(String(a.promptTokensEstimate)) + (a.stream ? "|1:1" : "|1:0");
      return `${VERSION}.${mac(key, text)}`;
    },
    signMetadata(authz) {
      const values = renderedFields(authz);
      return values && `${VERSION}.${mac(key, canonical(values))}`;
    },
  };
}

/** A metadata value as the text the signer rendered, or undefined when its type cannot be one the signer wrote. */
function rendered(field: string, value: unknown): string | undefined {
  if (field === K.stream) return typeof value === "boolean" ? (value ? "1" : "0") : undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

function renderedFields(authz: Record<string, unknown>): string[] | undefined {
  const values: string[] = [];
  for (const field of SIGNED_FIELDS) {
    const v = rendered(field, authz[field]);
    if (v === undefined) return undefined;
    values.push(v);
  }
  return values;
}

/**
 * The verifier the meter and `tollgate reconcile` use: the current secret first, then each previous one (rotation:
 * entries signed just before a secret change still verify while the old secret is listed).
 */
export function createDecisionVerifier(
  secret: string | Uint8Array,
  previous: ReadonlyArray<string | Uint8Array> = [],
): DecisionVerifier {
  const keys = [keyOf(secret, "signing.secret"), ...previous.map((p, i) => keyOf(p, `signing.previous_secrets[${i}]`))];
  return {
    verify(authz) {
      const sig = authz[K.signature];
      if (typeof sig !== "string" || !sig.startsWith(`${VERSION}.`)) return false;
      const given = Buffer.from(sig.slice(VERSION.length + 1), "base64url");
      if (given.length !== DIGEST) return false;
      const values = renderedFields(authz);
      if (!values) return false;
      const text = canonical(values);
      for (const key of keys) if (timingSafeEqual(Buffer.from(mac(key, text), "base64url"), given)) return true;
      return false;
    },
  };
}
