import type { AdminRepository, ModelView, Principal } from "../domain/admin-store.js";
import { AppError, invalidField, NotFoundError } from "../domain/errors.js";
import { audit, nextCatalogueVersion, requireOperator, type AdminContext } from "./admin-context.js";
import { bigCount, count, id, positive, text } from "./validate.js";

const M = "tollgate.admin.v1.CatalogueService/";
/** USD 1000 per token: far beyond any real price, small enough that cost arithmetic stays in int64 nano-USD. */
const MAX_PRICE = 1_000_000_000_000_000n;
const MAX_TOKENS = 100_000_000;

/** Exact per-token prices in pico-USD. */
export interface PricesInput {
  input: bigint;
  cachedInput: bigint;
  output: bigint;
}

/** A model as input (tier as the domain's name). */
export interface ModelInput {
  id: string;
  name: string;
  provider: string;
  upstreamModel: string;
  tier: string;
  prices?: PricesInput;
  contextWindow: number;
  maxOutputTokens: number;
  /** 0 or absent: the plan's expected output, else the default. */
  expectedOutputTokens?: number;
}

/** Catalogue use cases (operators): models, prices and providers; a change reaches admission within a second. */
export type CatalogueOperations = ReturnType<typeof createCatalogueOperations>;

function prices(p: PricesInput | undefined, field: string): PricesInput {
  if (!p) throw invalidField(field, "is required");
  return {
    input: bigCount(p.input, `${field}.input_pico_usd_per_token`, MAX_PRICE),
    cachedInput: bigCount(p.cachedInput, `${field}.cached_input_pico_usd_per_token`, MAX_PRICE),
    output: bigCount(p.output, `${field}.output_pico_usd_per_token`, MAX_PRICE),
  };
}

function tier(value: string, field: string): string {
  if (value !== "basic" && value !== "premium") throw invalidField(field, "must be TIER_BASIC or TIER_PREMIUM");
  return value;
}

/** Creates the catalogue use cases. */
export function createCatalogueOperations(ctx: AdminContext) {
  const { store } = ctx;
  const get = async (modelId: string) => {
    const model = await store.model(modelId);
    if (!model) throw new NotFoundError(`model "${modelId}" does not exist`);
    return model;
  };
  const changed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const out = await fn();
    await ctx.events.catalogueChanged();
    return out;
  };
  const mutate = (
    who: Principal,
    method: string,
    modelId: string,
    fn: (tx: AdminRepository, now: number) => Promise<boolean>,
  ) =>
    changed(() =>
      store.transaction(async (tx) => {
        if (!(await fn(tx, await nextCatalogueVersion(tx, ctx.clock()))))
          throw new NotFoundError(`model "${modelId}" does not exist`);
        await audit(ctx, tx, who, M + method, { model_id: modelId });
        return (await tx.model(modelId))!;
      }),
    );
  return {
    async list(who: Principal, includeRetired: boolean): Promise<ModelView[]> {
      requireOperator(who);
      return store.models(includeRetired);
    },
    async get(who: Principal, modelId: string): Promise<ModelView> {
      requireOperator(who);
      return get(id(modelId, "model_id"));
    },
    async providers(who: Principal): Promise<Array<{ id: string; basePath: string }>> {
      requireOperator(who);
      return store.providers();
    },
    async create(who: Principal, m: ModelInput): Promise<ModelView> {
      requireOperator(who);
      const model = {
        id: id(m.id, "model.id"),
        name: text(m.name, "model.name"),
        provider: id(m.provider, "model.provider"),
        upstreamModel: text(m.upstreamModel, "model.upstream_model"),
        tier: tier(m.tier, "model.tier"),
        prices: prices(m.prices, "model.prices"),
        contextWindow: positive(m.contextWindow, "model.context_window", MAX_TOKENS),
        maxOutputTokens: positive(m.maxOutputTokens, "model.max_output_tokens", MAX_TOKENS),
        expectedOutputTokens: m.expectedOutputTokens
          ? count(m.expectedOutputTokens, "model.expected_output_tokens", MAX_TOKENS)
          : null,
        retired: false,
      };
      return changed(() =>
        store.transaction(async (tx) => {
          if (!(await tx.providers()).some((p) => p.id === model.provider))
            throw invalidField("model.provider", `provider "${model.provider}" does not exist`);
          if (await tx.model(model.id)) throw new AppError("already_exists", `model "${model.id}" already exists`);
          const now = await nextCatalogueVersion(tx, ctx.clock());
          await tx.insertModel({ ...model, createdAt: now, updatedAt: now });
          await audit(ctx, tx, who, M + "CreateModel", { model_id: model.id });
          return (await tx.model(model.id))!;
        }),
      );
    },
    async update(
      who: Principal,
      input: {
        modelId: string;
        name?: string;
        upstreamModel?: string;
        tier?: string;
        prices?: PricesInput;
        contextWindow?: number;
        maxOutputTokens?: number;
        expectedOutputTokens?: number;
      },
    ): Promise<ModelView> {
      requireOperator(who);
      const modelId = id(input.modelId, "model_id");
      const changes: Partial<ModelView> = {};
      if (input.name !== undefined) changes.name = text(input.name, "name");
      if (input.upstreamModel !== undefined) changes.upstreamModel = text(input.upstreamModel, "upstream_model");
      if (input.tier !== undefined) changes.tier = tier(input.tier, "tier");
      if (input.prices !== undefined) changes.prices = prices(input.prices, "prices");
      if (input.contextWindow !== undefined)
        changes.contextWindow = positive(input.contextWindow, "context_window", MAX_TOKENS);
      if (input.maxOutputTokens !== undefined)
        changes.maxOutputTokens = positive(input.maxOutputTokens, "max_output_tokens", MAX_TOKENS);
      if (input.expectedOutputTokens !== undefined)
        changes.expectedOutputTokens = count(input.expectedOutputTokens, "expected_output_tokens", MAX_TOKENS) || null;
      if (Object.keys(changes).length === 0) throw invalidField("model_id", "nothing to update");
      return mutate(who, "UpdateModel", modelId, (tx, now) => tx.updateModel(modelId, changes, now));
    },
    async retire(who: Principal, modelIdInput: string): Promise<ModelView> {
      requireOperator(who);
      const modelId = id(modelIdInput, "model_id");
      return mutate(who, "RetireModel", modelId, (tx, now) => tx.updateModel(modelId, { retired: true }, now));
    },
  };
}
