import { createHmac, timingSafeEqual } from "node:crypto";
import { invalidField } from "../domain/errors.js";

/** Default and maximum page sizes for every list. */
export const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;
/** A token we issue is well under this; anything longer is refused before it is decoded. */
const MAX_TOKEN_LENGTH = 512;
const INT64_MAX = 9_223_372_036_854_775_807n;
/** HMAC-SHA256 truncated to 128 bits: forging one is a 2^128 guess. */
const TAG_BYTES = 16;

/** A cursor part: a time (safe non-negative integer), an id (bounded string), or a bigint row id (decimal string). */
export type CursorPart = "time" | "id" | "bigint";
type PartValue<P extends CursorPart> = P extends "time" ? number : string;
/** The decoded cursor of a shape. */
export type Cursor<S extends readonly CursorPart[]> = { -readonly [I in keyof S]: PartValue<S[I]> };

/** Signs and checks opaque page tokens. */
export interface PageTokens {
  encode(scope: string, cursor: ReadonlyArray<string | number>): Promise<string>;
  /** The cursor of a token this server issued for `scope`; InvalidArgument naming page_token otherwise. */
  decode<S extends readonly CursorPart[]>(token: string, scope: string, shape: S): Promise<Cursor<S> | undefined>;
}

/**
 * A page token is base64url(tag ‖ JSON cursor), the tag an HMAC-SHA256 (server secret) over the list's scope and the cursor:
 * a forged or edited token, or one replayed against another list or filter, never reaches a query; the cursor's
 * parts are still range-checked, so even a signed token cannot carry a value SQL cannot hold.
 */
export function createPageTokens(secret: () => Promise<Buffer>): PageTokens {
  const mac = async (scope: string, payload: Buffer) =>
    createHmac("sha256", await secret())
      .update(scope)
      .update("\n")
      .update(payload)
      .digest()
      .subarray(0, TAG_BYTES);
  const refuse = () => invalidField("page_token", "is not a page token from this list (or its filters changed)");
  return {
    async encode(scope, cursor) {
      const payload = Buffer.from(JSON.stringify(cursor));
      return Buffer.concat([await mac(scope, payload), payload]).toString("base64url");
    },
    async decode(token, scope, shape) {
      if (token === "") return undefined;
      if (token.length > MAX_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(token)) throw refuse();
      const bytes = Buffer.from(token, "base64url");
      if (bytes.length <= TAG_BYTES) throw refuse();
      const payload = bytes.subarray(TAG_BYTES);
      if (!timingSafeEqual(bytes.subarray(0, TAG_BYTES), await mac(scope, payload))) throw refuse();
      let cursor: unknown;
      try {
        cursor = JSON.parse(payload.toString("utf8"));
      } catch {
        throw refuse();
      }
      if (!Array.isArray(cursor) || cursor.length !== shape.length) throw refuse();
      shape.forEach((part, i) => {
        const v: unknown = cursor[i];
        const ok =
          part === "time"
            ? Number.isSafeInteger(v) && (v as number) >= 0
            : part === "id"
              ? typeof v === "string" && v.length <= 128
              : typeof v === "string" && /^\d{1,19}$/.test(v) && BigInt(v) <= INT64_MAX;
        if (!ok) throw refuse();
      });
      return cursor as Cursor<typeof shape>;
    },
  };
}

/** Validates page_size: 0 means the default; negative or above the maximum is InvalidArgument. */
export function pageSize(size: number): number {
  if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE)
    throw invalidField("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  return size === 0 ? DEFAULT_PAGE_SIZE : size;
}

/** Splits the `size + 1` rows a list fetched into the page and the next page's token ("" on the last page). */
export async function pageOf<R>(
  tokens: PageTokens,
  rows: R[],
  size: number,
  scope: string,
  cursor: (last: R) => ReadonlyArray<string | number>,
): Promise<{ items: R[]; nextPageToken: string }> {
  const items = rows.slice(0, size);
  const last = items[items.length - 1];
  return {
    items,
    nextPageToken: rows.length > size && last !== undefined ? await tokens.encode(scope, cursor(last)) : "",
  };
}
