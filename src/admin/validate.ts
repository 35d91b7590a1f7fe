import { Code, ConnectError } from "@connectrpc/connect";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";

/** An InvalidArgument error whose message starts with the offending field, e.g. "name: must not be empty". */
export function invalid(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** A required, trimmed, bounded text field. */
export function text(value: string, field: string, max = 200): string {
  if (value.trim() === "") throw invalid(field, "must not be empty");
  if (value.length > max) throw invalid(field, `must be at most ${max} characters`);
  if (/[\u0000-\u001f]/.test(value)) throw invalid(field, "must not contain control characters");
  return value.trim();
}

/** An identifier of our shape (prefix_base62) or a catalogue slug: letters, digits, '.', '_', '-'. */
export function id(value: string, field: string): string {
  if (value === "") throw invalid(field, "must not be empty");
  if (value.length > 128 || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) throw invalid(field, "must be an id (letters, digits, '.', '_' or '-')");
  return value;
}

/** A non-negative integer field within bounds (0 usually means "not set"). */
export function count(value: number | bigint, field: string, max: number | bigint): number {
  const v = BigInt(value);
  if (v < 0n) throw invalid(field, "must not be negative");
  if (v > BigInt(max)) throw invalid(field, `must be at most ${max}`);
  return Number(v);
}

/** A strictly positive integer field within bounds. */
export function positive(value: number | bigint, field: string, max: number | bigint): number {
  if (BigInt(value) <= 0n) throw invalid(field, "must be greater than zero");
  return count(value, field, max);
}

/** An optional timestamp field as epoch ms. */
export function time(value: Timestamp | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = timestampMs(value);
  if (!Number.isSafeInteger(ms) || ms < 0) throw invalid(field, "must be a valid time after 1970");
  return ms;
}

/** Labels: bounded keys and values, at most 32 pairs. */
export function labels(value: Record<string, string>, field: string): Record<string, string> {
  const entries = Object.entries(value);
  if (entries.length > 32) throw invalid(field, "at most 32 labels");
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/.test(k)) throw invalid(`${field}.${k}`, "label names are letters, digits, '.', '_', '/' or '-' (at most 63)");
    if (v.length > 200) throw invalid(`${field}.${k}`, "label values are at most 200 characters");
  }
  return value;
}
