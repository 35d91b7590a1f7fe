import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Knex } from "knex";
import { int } from "../adapters/sql/database.js";
import { CatalogueService, ListModelsResponseSchema, ProviderSchema, type Prices } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { caller, requireOperator } from "./access.js";
import { audit, type AdminDeps } from "./admin-deps.js";
import { id, invalid, positive, text } from "./validate.js";
import { modelMessage, notFound, tierFromProto } from "./views.js";

const M = "tollgate.admin.v1.CatalogueService/";
/** USD 1000 per token: far beyond any real price, small enough that cost arithmetic stays in int64 nano-USD. */
const MAX_PRICE = 1_000_000_000_000_000n;

/**
 * The updated_at for a catalogue change: strictly above every current one, so the catalogue version (the newest
 * updated_at) always moves and every replica's one-second poll reloads, even for two changes in one millisecond.
 */
export async function nextCatalogueVersion(knex: Knex, now: number): Promise<number> {
  const rows = await Promise.all(["providers", "plans", "models"].map((t) => knex(t).max({ v: "updated_at" }).first()));
  const current = Math.max(0, ...rows.map((r) => (r?.v == null ? 0 : int(r.v))));
  return Math.max(now, current + 1);
}

function prices(p: Prices | undefined, field: string): Record<string, string> {
  if (!p) throw invalid(field, "is required");
  const check = (v: bigint, name: string) => {
    if (v < 0n) throw invalid(`${field}.${name}`, "must not be negative");
    if (v > MAX_PRICE) throw invalid(`${field}.${name}`, `must be at most ${MAX_PRICE}`);
    return v.toString();
  };
  return {
    price_input: check(p.inputPicoUsdPerToken, "input_pico_usd_per_token"),
    price_cached_input: check(p.cachedInputPicoUsdPerToken, "cached_input_pico_usd_per_token"),
    price_output: check(p.outputPicoUsdPerToken, "output_pico_usd_per_token"),
  };
}

/** CatalogueService (operators): models, prices and providers; a change reaches admission within a second. */
export function catalogueService(deps: AdminDeps): ServiceImpl<typeof CatalogueService> {
  const { knex } = deps.stores.db;
  const get = async (modelId: string) => {
    const row = await knex("models").where({ id: modelId }).first();
    if (!row) throw notFound(`model "${modelId}"`);
    return row;
  };
  const changed = async () => {
    await deps.reloadCatalogue();
  };
  return {
    async listModels(req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      let q = knex("models").orderBy([{ column: "position" }, { column: "id" }]);
      if (!req.includeRetired) q = q.where({ retired: false });
      return create(ListModelsResponseSchema, { models: (await q).map(modelMessage) });
    },
    async getModel(req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      return { model: modelMessage(await get(id(req.modelId, "model_id"))) };
    },
    async createModel(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const m = req.model;
      if (!m) throw invalid("model", "is required");
      const modelId = id(m.id, "model.id");
      const provider = id(m.provider, "model.provider");
      if (!(await knex("providers").where({ id: provider }).first("id"))) throw invalid("model.provider", `provider "${provider}" does not exist`);
      if (await knex("models").where({ id: modelId }).first("id")) throw new ConnectError(`model "${modelId}" already exists`, Code.AlreadyExists);
      const now = await nextCatalogueVersion(knex, deps.clock());
      const position = await knex("models").max({ p: "position" }).first();
      await knex("models").insert({
        id: modelId,
        name: text(m.name, "model.name"),
        provider,
        upstream_model: text(m.upstreamModel, "model.upstream_model"),
        tier: tierFromProto(m.tier, "model.tier"),
        ...prices(m.prices, "model.prices"),
        context_window: positive(m.contextWindow, "model.context_window", 100_000_000),
        max_output_tokens: positive(m.maxOutputTokens, "model.max_output_tokens", 100_000_000),
        position: (position?.p == null ? 0 : int(position.p)) + 1,
        retired: false,
        created_at: now,
        updated_at: now,
      });
      await changed();
      await audit(deps, who, M + "CreateModel", { model_id: modelId });
      return { model: modelMessage(await get(modelId)) };
    },
    async updateModel(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const modelId = id(req.modelId, "model_id");
      const changes: Record<string, unknown> = {};
      if (req.name !== undefined) changes.name = text(req.name, "name");
      if (req.upstreamModel !== undefined) changes.upstream_model = text(req.upstreamModel, "upstream_model");
      if (req.tier !== 0) changes.tier = tierFromProto(req.tier, "tier");
      if (req.prices) Object.assign(changes, prices(req.prices, "prices"));
      if (req.contextWindow !== undefined) changes.context_window = positive(req.contextWindow, "context_window", 100_000_000);
      if (req.maxOutputTokens !== undefined) changes.max_output_tokens = positive(req.maxOutputTokens, "max_output_tokens", 100_000_000);
      if (Object.keys(changes).length === 0) throw invalid("model_id", "nothing to update");
      changes.updated_at = await nextCatalogueVersion(knex, deps.clock());
      if ((await knex("models").where({ id: modelId }).update(changes)) === 0) throw notFound(`model "${modelId}"`);
      await changed();
      await audit(deps, who, M + "UpdateModel", { model_id: modelId });
      return { model: modelMessage(await get(modelId)) };
    },
    async retireModel(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const modelId = id(req.modelId, "model_id");
      const updated = await knex("models").where({ id: modelId }).update({ retired: true, updated_at: await nextCatalogueVersion(knex, deps.clock()) });
      if (updated === 0) throw notFound(`model "${modelId}"`);
      await changed();
      await audit(deps, who, M + "RetireModel", { model_id: modelId });
      return { model: modelMessage(await get(modelId)) };
    },
    async listProviders(_req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      const rows = await knex("providers").orderBy("id");
      return { providers: rows.map((r) => create(ProviderSchema, { id: r.id as string, basePath: r.base_path as string })) };
    },
  };
}

/** Validates a plan's rate limits (shared by create and update). */
export function planLimits(rpm: number, tpm: bigint, field: string): { rpm: number; tpm: number } {
  return { rpm: positive(rpm, `${field}requests_per_minute`, 10_000_000), tpm: positive(tpm, `${field}tokens_per_minute`, 1_000_000_000_000n) };
}

