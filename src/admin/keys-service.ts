import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { KeyService, ListKeysResponseSchema } from "../gen/tollgate/admin/v1/keys_pb.js";
import type { Principal } from "./tokens.js";
import { caller, canSee, requireAccount } from "./access.js";
import { audit, type AdminDeps } from "./admin-deps.js";
import { afterKeyset, decodePageToken, pageOf, pageSize } from "./page-token.js";
import { count, id, invalid, labels as checkLabels, text } from "./validate.js";
import { keyMessage, notFound, storeCall } from "./views.js";

const M = "tollgate.admin.v1.KeyService/";
const MAX_RPM = 10_000_000;
const MAX_TPM = 1_000_000_000_000n;
const MAX_GRACE_MS = 30 * 86_400_000;
const MAX_EXPIRY_MS = 10 * 365 * 86_400_000;

/** KeyService: create (secret once), list, update limits and model scope, rotate with grace, revoke. */
export function keyService(deps: AdminDeps): ServiceImpl<typeof KeyService> {
  const { knex } = deps.stores.db;

  /** The key's row if the caller may see it; NotFound otherwise, so another account's key ids reveal nothing. */
  const visibleKey = async (who: Principal, keyId: string) => {
    const row = await knex("api_keys").where({ id: id(keyId, "key_id") }).first();
    if (!row || !canSee(who, row.account_id as string)) throw notFound(`key "${keyId}"`);
    return row as Record<string, unknown>;
  };
  const allowList = async (models: readonly string[], field: string): Promise<string[]> => {
    if (models.length > 500) throw invalid(field, "at most 500 models");
    models.forEach((m, i) => id(m, `${field}[${i}]`));
    const known = new Set((await knex("models").whereIn("id", [...models]).select("id")).map((r) => r.id as string));
    const unknown = models.findIndex((m) => !known.has(m));
    if (unknown >= 0) throw invalid(`${field}[${unknown}]`, `model "${models[unknown]}" is not in the catalogue`);
    return [...new Set(models)];
  };

  return {
    async createKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = id(req.accountId, "account_id");
      requireAccount(who, accountId);
      const name = req.name === "" ? "" : text(req.name, "name");
      const labels = checkLabels(req.labels, "labels");
      const models = req.allowedModels.length ? await allowList(req.allowedModels, "allowed_models") : null;
      const rpm = count(req.requestsPerMinute, "requests_per_minute", MAX_RPM);
      const tpm = count(req.tokensPerMinute, "tokens_per_minute", MAX_TPM);
      let expiresAt: number | null = null;
      if (req.expiresIn) {
        const ms = durationMs(req.expiresIn);
        if (ms <= 0 || ms > MAX_EXPIRY_MS) throw invalid("expires_in", "must be positive and at most 10 years");
        expiresAt = deps.clock() + ms;
      }
      const issued = await storeCall(() =>
        deps.stores.keys.create({ accountId, name, labels, allowedModels: models, requestsPerMinute: rpm || null, tokensPerMinute: tpm || null, expiresAt }),
      );
      await audit(deps, who, M + "CreateKey", { key_id: issued.key.id, account_id: accountId });
      return { key: keyMessage((await knex("api_keys").where({ id: issued.key.id }).first())!), secret: issued.secret };
    },
    async getKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      return { key: keyMessage(await visibleKey(who, req.keyId)) };
    },
    async listKeys(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const accountId = req.accountId === "" && who.kind === "account" ? who.accountId : id(req.accountId, "account_id");
      requireAccount(who, accountId);
      if (!(await knex("accounts").where({ id: accountId }).first("id"))) throw notFound(`account "${accountId}"`);
      const size = pageSize(req.pageSize);
      const scope = `keys:${accountId}`;
      const after = decodePageToken(req.pageToken, scope, ["number", "string"]);
      let q = knex("api_keys").where({ account_id: accountId }).orderBy([{ column: "created_at" }, { column: "id" }]).limit(size + 1);
      const { page, nextPageToken } = pageOf(await afterKeyset(q, ["created_at", "id"], after), size, scope, (last) => [Number(last.created_at), last.id]);
      return create(ListKeysResponseSchema, { keys: page.map(keyMessage), nextPageToken });
    },
    async updateKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const row = await visibleKey(who, req.keyId);
      const keyId = row.id as string;
      const changes: Record<string, unknown> = {};
      if (req.name !== undefined) changes.name = req.name === "" ? "" : text(req.name, "name");
      if (req.allowedModels) changes.allowed_models = req.allowedModels.models.length ? JSON.stringify(await allowList(req.allowedModels.models, "allowed_models.models")) : null;
      if (req.labels) changes.labels = JSON.stringify(checkLabels(req.labels.labels, "labels.labels"));
      const limits: { requestsPerMinute?: number | null; tokensPerMinute?: number | null } = {};
      if (req.requestsPerMinute !== undefined) limits.requestsPerMinute = count(req.requestsPerMinute, "requests_per_minute", MAX_RPM) || null;
      if (req.tokensPerMinute !== undefined) limits.tokensPerMinute = count(req.tokensPerMinute, "tokens_per_minute", MAX_TPM) || null;
      if (Object.keys(changes).length === 0 && Object.keys(limits).length === 0) {
        throw invalid("key_id", "nothing to update (set name, requests_per_minute, tokens_per_minute, allowed_models or labels)");
      }
      if (Object.keys(changes).length > 0) await knex("api_keys").where({ id: keyId }).update({ ...changes, updated_at: deps.clock() });
      // setLimits is the key store's mutation path that publishes the change to every replica (and bumps updated_at
      // for the polling fallback), so scope and label changes ride on it too.
      await storeCall(() => deps.stores.keys.setLimits(keyId, limits));
      deps.invalidate({ keyId });
      await audit(deps, who, M + "UpdateKey", { key_id: keyId, account_id: row.account_id as string });
      return { key: keyMessage((await knex("api_keys").where({ id: keyId }).first())!) };
    },
    async rotateKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const row = await visibleKey(who, req.keyId);
      const grace = req.grace ? durationMs(req.grace) : 0;
      if (grace < 0 || grace > MAX_GRACE_MS) throw invalid("grace", "must be between 0 and 30 days");
      const issued = await storeCall(() => deps.keyMutations.rotate(row.id as string, grace));
      await audit(deps, who, M + "RotateKey", { key_id: issued.key.id, account_id: issued.key.accountId });
      return { key: keyMessage((await knex("api_keys").where({ id: issued.key.id }).first())!), secret: issued.secret };
    },
    async revokeKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const row = await visibleKey(who, req.keyId);
      await storeCall(() => deps.keyMutations.revoke(row.id as string));
      await audit(deps, who, M + "RevokeKey", { key_id: row.id as string, account_id: row.account_id as string });
      return { key: keyMessage((await knex("api_keys").where({ id: row.id as string }).first())!) };
    },
  };
}
