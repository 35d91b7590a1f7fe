import { mintSecret, newId } from "../../domain/api-key.js";
import type { KeyEvents } from "../../domain/key-events.js";
import type { KeyOverride, KeyRecord, OverrideSetter } from "../../domain/keys.js";
import { accountFromRow, budgetFromRow, NotFoundError } from "./account-store.js";
import { int, intOrNull, type Database, writeTransaction } from "./database.js";

/** The key store's port is declared with the domain (src/domain/ports.ts); re-exported for its importers. */
export type { IssuedKey, KeyStore, NewKey } from "../../domain/ports.js";
import type { IssuedKey, KeyStore } from "../../domain/ports.js";

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
    requestsPerDay: intOrNull(row.requests_per_day),
    tokensPerDay: intOrNull(row.tokens_per_day),
    maxConcurrency: intOrNull(row.max_concurrency),
    budget: budgetFromRow(row),
    setBy: settersFromRow(row),
    createdAt: int(row.created_at),
    updatedAt: int(row.updated_at),
  };
}

/** The `api_keys` column that records who set each override. */
export const SET_BY_COLUMN: Readonly<Record<KeyOverride, string>> = {
  requestsPerMinute: "requests_per_minute_set_by",
  tokensPerMinute: "tokens_per_minute_set_by",
  allowedModels: "allowed_models_set_by",
  budget: "budget_set_by",
  requestsPerDay: "requests_per_day_set_by",
  tokensPerDay: "tokens_per_day_set_by",
  maxConcurrency: "max_concurrency_set_by",
};

function settersFromRow(row: Record<string, unknown>): Partial<Record<KeyOverride, OverrideSetter>> {
  const out: Partial<Record<KeyOverride, OverrideSetter>> = {};
  for (const [field, column] of Object.entries(SET_BY_COLUMN) as Array<[KeyOverride, string]>) {
    const who = row[column];
    if (who === "operator" || who === "account") out[field] = who;
  }
  return out;
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
        // This store is the operator's side (tests, drills, bootstrap): what it sets stands unless told otherwise.
        requests_per_minute_set_by: input.requestsPerMinute == null ? null : (input.setBy ?? "operator"),
        tokens_per_minute_set_by: input.tokensPerMinute == null ? null : (input.setBy ?? "operator"),
        allowed_models_set_by: input.allowedModels == null ? null : (input.setBy ?? "operator"),
        requests_per_day: input.requestsPerDay ?? null,
        tokens_per_day: input.tokensPerDay ?? null,
        max_concurrency: input.maxConcurrency ?? null,
        requests_per_day_set_by: input.requestsPerDay == null ? null : (input.setBy ?? "operator"),
        tokens_per_day_set_by: input.tokensPerDay == null ? null : (input.setBy ?? "operator"),
        max_concurrency_set_by: input.maxConcurrency == null ? null : (input.setBy ?? "operator"),
        budget_nanos: input.budget ? input.budget.limit : null,
        budget_period: input.budget ? input.budget.period : null,
        budget_set_by: input.budget == null ? null : (input.setBy ?? "operator"),
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
      const updated = await knex("api_keys")
        .where({ id })
        .whereNull("revoked_at")
        .update({ revoked_at: now, updated_at: now });
      const key = await store.get(id);
      if (!key) throw new NotFoundError(`key "${id}" does not exist`);
      if (updated === 0 && key.revokedAt === null) throw new Error(`key "${id}" could not be revoked`);
      await changed(id);
      return key;
    },
    async rotate(id, graceMs) {
      const now = clock();
      const minted = mintSecret();
      const issued = await writeTransaction(db, async (trx): Promise<IssuedKey> => {
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
      if (limits.requestsPerMinute !== undefined)
        Object.assign(changes, {
          requests_per_minute: limits.requestsPerMinute,
          requests_per_minute_set_by: limits.requestsPerMinute === null ? null : "operator",
        });
      if (limits.tokensPerMinute !== undefined)
        Object.assign(changes, {
          tokens_per_minute: limits.tokensPerMinute,
          tokens_per_minute_set_by: limits.tokensPerMinute === null ? null : "operator",
        });
      const updated = await knex("api_keys").where({ id }).update(changes);
      if (updated === 0) throw new NotFoundError(`key "${id}" does not exist`);
      await changed(id);
      return (await store.get(id))!;
    },
    async resolveByHash(hash) {
      const row = await knex("api_keys").where({ secret_hash: hash }).orWhere({ previous_secret_hash: hash }).first();
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
