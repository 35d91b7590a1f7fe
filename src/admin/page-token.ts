import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";

/** Default and maximum page sizes for every list RPC. */
export const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

/**
 * Encodes a keyset cursor as an opaque page token: base64url of JSON carrying the cursor and a digest of the query it
 * belongs to, so a token replayed against another query (or edited) is refused instead of silently skipping rows.
 */
export function encodePageToken(cursor: readonly (string | number)[], scope: string): string {
  return Buffer.from(JSON.stringify({ c: cursor, s: digest(scope) })).toString("base64url");
}

/** Decodes a page token made by encodePageToken for the same scope; anything else is InvalidArgument naming the field. */
export function decodePageToken(token: string, scope: string, shape: ReadonlyArray<"string" | "number">): Array<string | number> | undefined {
  if (token === "") return undefined;
  const invalid = () => new ConnectError("page_token: is not a page token from this list (or its filters changed)", Code.InvalidArgument);
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const value = parsed as { c?: unknown; s?: unknown };
  if (typeof value !== "object" || value === null || value.s !== digest(scope) || !Array.isArray(value.c) || value.c.length !== shape.length) throw invalid();
  for (let i = 0; i < shape.length; i++) {
    const part = value.c[i];
    if (shape[i] === "number" ? !Number.isSafeInteger(part) : typeof part !== "string") throw invalid();
  }
  return value.c as Array<string | number>;
}

/** Validates page_size: 0 means the default; negative or above the maximum is InvalidArgument. */
export function pageSize(size: number): number {
  if (size < 0 || size > MAX_PAGE_SIZE) throw new ConnectError(`page_size: must be between 0 and ${MAX_PAGE_SIZE}`, Code.InvalidArgument);
  return size === 0 ? DEFAULT_PAGE_SIZE : size;
}

function digest(scope: string): string {
  return createHash("sha256").update(scope).digest("base64url").slice(0, 12);
}

/**
 * Narrows a list query to the rows strictly after a two-column keyset cursor (a time column, then an id that breaks
 * ties), in the list's order.
 */
export function afterKeyset<Q extends Knex.QueryBuilder>(query: Q, columns: readonly [string, string], after: Array<string | number> | undefined, order: "asc" | "desc" = "asc"): Q {
  if (!after) return query;
  const [time, id] = columns;
  const beyond = order === "asc" ? ">" : "<";
  return query.andWhere((w) => w.where(time, beyond, after[0]!).orWhere((x) => x.where(time, "=", after[0]!).andWhere(id, beyond, after[1]!))) as Q;
}

/** Splits the `size + 1` rows a list fetched into the page and the token for the next page ("" on the last one). */
export function pageOf<R>(rows: R[], size: number, scope: string, cursor: (last: R) => ReadonlyArray<string | number>): { page: R[]; nextPageToken: string } {
  const page = rows.slice(0, size);
  const last = page[page.length - 1];
  return { page, nextPageToken: rows.length > size && last !== undefined ? encodePageToken(cursor(last), scope) : "" };
}
