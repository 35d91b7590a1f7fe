import { mintSecret, newId } from "../../domain/api-key.js";
import type { KeyEvents } from "../../domain/key-events.js";
import type { AccountRecord, KeyRecord, ResolvedKey } from "../../domain/keys.js";
import { accountFromRow, NotFoundError } from "./account-store.js";
import { int, intOrNull, type Database } from "./database.js";

/** What creating a key needs; limits and model scope are optional narrowing of the plan. */
export interface NewKey {
  accountId: string;
  name?: string;
  expiresAt?: number | null;
  labels?: Record<string, string>;
  allowedModels?: string[] | null;
  requestsPerMinute?: number | null;
  tokensPerMinute?: number | null;
}

/** A key with its plaintext secret: returned exactly once, at creation or rotation. */
export interface IssuedKey {
  key: KeyRecord;
  secret: string;
}

/** API keys in SQL. Secrets are never stored, only their hashes. */
export interface KeyStore {
  create(input: NewKey): Promise<IssuedKey>;
  get(id: string): Promise<KeyRecord | undefined>;
  listByAccount(accountId: string): Promise<KeyRecord[]>;
  revoke(id: string): Promise<KeyRecord>;
  /** New secret for the same key; the old one dies now or after `graceMs`. */
  rotate(id: string, graceMs?: number): Promise<IssuedKey>;
  /** Sets or clears (null) the key's own limits; `undefined` leaves a limit as it is. */
  setLimits(id: string, limits: { requestsPerMinute?: number | null; tokensPerMinute?: number | null }): Promise<KeyRecord>;
  /** Finds the key (and its account) whose current or in-grace previous secret has this hash: the cold path of Check. */
  resolveByHash(hash: string): Promise<ResolvedKey | null>;
  /** Keys and accounts changed at or after `since` (ms), for cache invalidation by polling. */
  changedSince(since: number): Promise<{ keys: ResolvedKey[]; accounts: AccountRecord[] }>;
  /** Records last use, batched off the hot path. */
  touch(lastUsed: ReadonlyMap<string, number>): Promise<void>;
}

/** Maps an `api_keys` row. */
export function keyFromRow(row: Record<string, unknown>): KeyRecord {
  return {
    id: row.id as string,
    accountId: row.account_id as string,
    name: row.name as string,
    displayPrefix: row.display_prefix as string,
    secretHash: row.secret_hash as string,
    previousSecretHash: (row.previous_secret_hash as string | null) ?? null,
    previousSecretExpiresAt: intOrNull(row.previous_secret_expires_at),
    expiresAt: intOrNull(row.expires_at),
    revokedAt: intOrNull(row.revoked_at),
    labels: JSON.parse((row.labels as string) || "{}"),
    allowedModels: row.allowed_models ? JSON.parse(row.allowed_models as string) : null,
    requestsPerMinute: intOrNull(row.requests_per_minute),
    tokensPerMinute: intOrNull(row.tokens_per_minute),
    createdAt: int(row.created_at),
    updatedAt: int(row.updated_at),
  };
}

/**
 * Creates the SQL key store. With `events`, every mutation a replica's cache must see at once (revoke, rotate, limits)
 * is published after it commits; the key-cache poll remains the fallback.
 */
export function createKeyStore(db: Database, clock: () => number = Date.now, events?: KeyEvents): KeyStore {
  const { knex } = db;
  const changed = (keyId: string) => events?.publish({ keyId });
  const store: KeyStore = {
    async create(input) {
      const account = await knex("accounts").where({ id: input.accountId }).first();
      if (!account) throw new NotFoundError(`account "${input.accountId}" does not exist`);
      if (input.allowedModels) {
        const known = new Set((await knex("models").whereIn("id", input.allowedModels).select("id")).map((r) => r.id));
        const unknown = input.allowedModels.filter((m) => !known.has(m));
        if (unknown.length > 0) throw new NotFoundError(`model "${unknown[0]}" is not in the catalogue`);
      }
      const minted = mintSecret();
      const now = clock();
      const row = {
        id: newId("key"),
        account_id: input.accountId,
        name: input.name ?? "",
        display_prefix: minted.displayPrefix,
        secret_hash: minted.hash,
        previous_secret_hash: null,
        previous_secret_expires_at: null,
        expires_at: input.expiresAt ?? null,
        revoked_at: null,
        labels: JSON.stringify(input.labels ?? {}),
        allowed_models: input.allowedModels ? JSON.stringify(input.allowedModels) : null,
        requests_per_minute: input.requestsPerMinute ?? null,
        tokens_per_minute: input.tokensPerMinute ?? null,
        created_at: now,
        updated_at: now,
      };
      await knex("api_keys").insert(row);
      return { key: keyFromRow(row), secret: minted.secret };
    },
    async get(id) {
      const row = await knex("api_keys").where({ id }).first();
      return row ? keyFromRow(row) : undefined;
    },
    async listByAccount(accountId) {
      return (await knex("api_keys").where({ account_id: accountId }).orderBy("created_at")).map(keyFromRow);
    },
    async revoke(id) {
      const now = clock();
      const updated = await knex("api_keys").where({ id }).whereNull("revoked_at").update({ revoked_at: now, updated_at: now });
      const key = await store.get(id);
      if (!key) throw new NotFoundError(`key "${id}" does not exist`);
      if (updated === 0 && key.revokedAt === null) throw new Error(`key "${id}" could not be revoked`);
      await changed(id);
      return key;
    },
    async rotate(id, graceMs) {
      const now = clock();
      const minted = mintSecret();
      const issued = await knex.transaction(async (trx): Promise<IssuedKey> => {
        const row = await trx("api_keys").where({ id }).forUpdate().first();
        if (!row) throw new NotFoundError(`key "${id}" does not exist`);
        if (row.revoked_at !== null) throw new NotFoundError(`key "${id}" is revoked and cannot be rotated`);
        const grace = graceMs && graceMs > 0;
        const changes = {
          secret_hash: minted.hash,
          display_prefix: minted.displayPrefix,
          previous_secret_hash: grace ? row.secret_hash : null,
          previous_secret_expires_at: grace ? now + graceMs : null,
          updated_at: now,
        };
        await trx("api_keys").where({ id }).update(changes);
        return { key: keyFromRow({ ...row, ...changes }), secret: minted.secret };
      });
      await changed(id);
      return issued;
    },
    async setLimits(id, limits) {
      const changes: Record<string, unknown> = { updated_at: clock() };
      if (limits.requestsPerMinute !== undefined) changes.requests_per_minute = limits.requestsPerMinute;
      if (limits.tokensPerMinute !== undefined) changes.tokens_per_minute = limits.tokensPerMinute;
      const updated = await knex("api_keys").where({ id }).update(changes);
      if (updated === 0) throw new NotFoundError(`key "${id}" does not exist`);
      await changed(id);
      return (await store.get(id))!;
    },
    async resolveByHash(hash) {
      const row = await knex("api_keys")
        .where({ secret_hash: hash })
        .orWhere({ previous_secret_hash: hash })
        .first();
      if (!row) return null;
      const account = await knex("accounts").where({ id: row.account_id }).first();
      return account ? { key: keyFromRow(row), account: accountFromRow(account) } : null;
    },
    async changedSince(since) {
      const keys = await knex("api_keys").where("updated_at", ">=", since);
      const accounts = (await knex("accounts").where("updated_at", ">=", since)).map(accountFromRow);
      const accountIds = [...new Set(keys.map((k) => k.account_id as string))];
      const accountRows = accountIds.length ? await knex("accounts").whereIn("id", accountIds) : [];
      const byId = new Map(accountRows.map((a) => [a.id as string, accountFromRow(a)]));
      return {
        keys: keys.flatMap((k) => {
          const account = byId.get(k.account_id as string);
          return account ? [{ key: keyFromRow(k), account }] : [];
        }),
        accounts,
      };
    },
    async touch(lastUsed) {
      for (const [id, at] of lastUsed) await knex("api_keys").where({ id }).update({ last_used_at: at });
    },
  };
  return store;
}
