import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { newId } from "../domain/api-key.js";
import { int, intOrNull, type Database } from "../adapters/sql/database.js";
import { NotFoundError } from "../adapters/sql/account-store.js";

/** Every admin token starts with this, so scanners (and people) tell it apart from a data-plane key (tg_). */
export const ADMIN_TOKEN_PREFIX = "tga_";
const RANDOM_LENGTH = 40;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Who is calling the admin API: an operator (everything) or one account (its own keys, usage, balance, top-ups). */
export type Principal = { kind: "operator"; tokenId: string } | { kind: "account"; tokenId: string; accountId: string };

/** An admin token as stored: never the secret, only its hash. */
export interface AdminTokenRecord {
  id: string;
  name: string;
  kind: "operator" | "account";
  accountId: string | null;
  createdAt: number;
  revokedAt: number | null;
}

/** Hashes an admin token for storage (sha256, hex): tokens carry ~238 random bits, so no slow hash is needed. */
export function hashAdminToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function mint(): string {
  let random = "";
  while (random.length < RANDOM_LENGTH) {
    for (const byte of randomBytes(64)) if (byte < 248 && random.length < RANDOM_LENGTH) random += BASE62[byte % 62];
  }
  return ADMIN_TOKEN_PREFIX + random;
}

function fromRow(row: Record<string, unknown>): AdminTokenRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    kind: row.kind as "operator" | "account",
    accountId: (row.account_id as string | null) ?? null,
    createdAt: int(row.created_at),
    revokedAt: intOrNull(row.revoked_at),
  };
}

/** Admin tokens in SQL: minted here, shown once, verified by hash in constant time. */
export interface AdminTokenStore {
  create(input: { kind: "operator" } | { kind: "account"; accountId: string }, name?: string): Promise<{ token: AdminTokenRecord; secret: string }>;
  list(): Promise<AdminTokenRecord[]>;
  revoke(id: string): Promise<AdminTokenRecord>;
  /** The principal a presented token stands for, or undefined when it is unknown, revoked or malformed. */
  verify(presented: string): Promise<Principal | undefined>;
}

/** Creates the SQL admin-token store. */
export function createAdminTokenStore(db: Database, clock: () => number = Date.now): AdminTokenStore {
  const { knex } = db;
  return {
    async create(input, name = "") {
      if (input.kind === "account" && !(await knex("accounts").where({ id: input.accountId }).first("id"))) {
        throw new NotFoundError(`account "${input.accountId}" does not exist`);
      }
      const secret = mint();
      const row = {
        id: newId("atok"),
        name,
        kind: input.kind,
        account_id: input.kind === "account" ? input.accountId : null,
        token_hash: hashAdminToken(secret),
        created_at: clock(),
        revoked_at: null,
      };
      await knex("admin_tokens").insert(row);
      return { token: fromRow(row), secret };
    },
    async list() {
      return (await knex("admin_tokens").orderBy("created_at")).map(fromRow);
    },
    async revoke(id) {
      await knex("admin_tokens").where({ id }).whereNull("revoked_at").update({ revoked_at: clock() });
      const row = await knex("admin_tokens").where({ id }).first();
      if (!row) throw new NotFoundError(`admin token "${id}" does not exist`);
      return fromRow(row);
    },
    async verify(presented) {
      if (!presented.startsWith(ADMIN_TOKEN_PREFIX) || presented.length !== ADMIN_TOKEN_PREFIX.length + RANDOM_LENGTH) return undefined;
      const hash = hashAdminToken(presented);
      const row = await knex("admin_tokens").where({ token_hash: hash }).first();
      // The index finds the row; the stored hash is still compared in constant time before it is trusted.
      if (!row || !timingSafeEqual(Buffer.from(row.token_hash as string), Buffer.from(hash))) return undefined;
      if (row.revoked_at !== null && row.revoked_at !== undefined) return undefined;
      return row.kind === "operator"
        ? { kind: "operator", tokenId: row.id as string }
        : { kind: "account", tokenId: row.id as string, accountId: row.account_id as string };
    },
  };
}
