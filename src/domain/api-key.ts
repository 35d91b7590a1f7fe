import { hash, randomBytes } from "node:crypto";

/** Every Tollgate key starts with this, so secret scanners and our own parser recognise it. */
export const KEY_PREFIX = "tg_";
/** Random base62 characters after the prefix: 40 × log2(62) ≈ 238 bits. */
export const KEY_RANDOM_LENGTH = 40;
/** Total length of a well-formed key. */
export const KEY_LENGTH = KEY_PREFIX.length + KEY_RANDOM_LENGTH;
/** Characters of the random part kept for display ("tg_AbC1…"). */
const DISPLAY_CHARS = 4;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const WELL_FORMED = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${KEY_RANDOM_LENGTH}}$`);

/** A freshly minted secret: the plaintext goes to the caller once; only the hash and the prefix are stored. */
export interface MintedSecret {
  secret: string;
  hash: string;
  displayPrefix: string;
}

/** Mints a key secret from the OS CSPRNG with rejection sampling (no modulo bias). */
export function mintSecret(): MintedSecret {
  let random = "";
  while (random.length < KEY_RANDOM_LENGTH) {
    for (const byte of randomBytes(64)) {
      if (byte < 248 && random.length < KEY_RANDOM_LENGTH) random += BASE62[byte % 62];
    }
  }
  const secret = KEY_PREFIX + random;
  return { secret, hash: hashSecret(secret), displayPrefix: displayPrefix(secret) };
}

/**
 * Hashes a secret for storage and lookup. Keys carry ~238 bits of entropy, so a fast hash is safe (no dictionary to
 * guess from) and keeps the cold-path lookup cheap.
 */
export function hashSecret(secret: string): string {
  return hash("sha256", secret, "base64url");
}

/** The short prefix shown in listings, never enough to authenticate. */
export function displayPrefix(secret: string): string {
  return secret.slice(0, KEY_PREFIX.length + DISPLAY_CHARS);
}

/** How a presented token looks before any lookup: well formed, a Tollgate key of the wrong shape, or something else. */
export type SecretShape = "well_formed" | "malformed_key" | "not_a_key";

/** Classifies a presented bearer token without hashing it (a 1 MB header never reaches the hash). */
export function secretShape(token: string): SecretShape {
  if (token.length === KEY_LENGTH && WELL_FORMED.test(token)) return "well_formed";
  return token.startsWith(KEY_PREFIX) ? "malformed_key" : "not_a_key";
}

/** A new opaque identifier with a type prefix (`acct_…`, `key_…`), 20 base62 characters of randomness. */
export function newId(kind: string): string {
  let random = "";
  while (random.length < 20) {
    for (const byte of randomBytes(32)) if (byte < 248 && random.length < 20) random += BASE62[byte % 62];
  }
  return `${kind}_${random}`;
}
