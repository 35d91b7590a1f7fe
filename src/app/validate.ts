import { invalidField } from "../domain/errors.js";

/** A required, trimmed, bounded text field. */
export function text(value: string, field: string, max = 200): string {
  if (value.trim() === "") throw invalidField(field, "must not be empty");
  if (value.length > max) throw invalidField(field, `must be at most ${max} characters`);
  if (/[\u0000-\u001f]/.test(value)) throw invalidField(field, "must not contain control characters");
  return value.trim();
}

/** An optional text field: "" stays "" (cleared), anything else must be valid text. */
export function optionalText(value: string, field: string): string {
  return value === "" ? "" : text(value, field);
}

/** An identifier of our shape (prefix_base62) or a catalogue slug: letters, digits, '.', '_', '-'. */
export function id(value: string, field: string): string {
  if (value === "") throw invalidField(field, "must not be empty");
  if (value.length > 128 || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value))
    throw invalidField(field, "must be an id (letters, digits, '.', '_' or '-')");
  return value;
}

/** A non-negative integer field within bounds (0 usually means "not set"). */
export function count(value: number | bigint, field: string, max: number | bigint): number {
  return Number(bigCount(value, field, BigInt(max)));
}

/** A non-negative integer field within bounds, kept as a bigint (int64 fields such as token counts and prices). */
export function bigCount(value: number | bigint, field: string, max: bigint): bigint {
  const v = BigInt(value);
  if (v < 0n) throw invalidField(field, "must not be negative");
  if (v > max) throw invalidField(field, `must be at most ${max}`);
  return v;
}

/** A strictly positive integer field within bounds. */
export function positive(value: number | bigint, field: string, max: number | bigint): number {
  if (BigInt(value) <= 0n) throw invalidField(field, "must be greater than zero");
  return count(value, field, max);
}

/** A time field in epoch ms, when given. */
export function epochMs(value: number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) throw invalidField(field, "must be a valid time after 1970");
  return value;
}

/** Labels: bounded keys and values, at most 32 pairs. */
export function labels(value: Record<string, string>, field: string): Record<string, string> {
  const entries = Object.entries(value);
  if (entries.length > 32) throw invalidField(field, "at most 32 labels");
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/.test(k))
      throw invalidField(`${field}.${k}`, "label names are letters, digits, '.', '_', '/' or '-' (at most 63)");
    if (v.length > 200) throw invalidField(`${field}.${k}`, "label values are at most 200 characters");
  }
  return { ...value };
}
