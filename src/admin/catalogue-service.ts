import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { PricesInput } from "../app/catalogue.js";
import { invalidField } from "../domain/errors.js";
import {
  type CatalogueService,
  ListModelsResponseSchema,
  ProviderSchema,
  Tier,
  type Prices,
} from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { modelMessage, tierFromProto } from "./views.js";

const prices = (p: Prices | undefined): PricesInput | undefined =>
  p && { input: p.inputPicoUsdPerToken, cachedInput: p.cachedInputPicoUsdPerToken, output: p.outputPicoUsdPerToken };

/** CatalogueService: protobuf ↔ the catalogue use cases (operators). */
export function catalogueService(deps: AdminDeps): ServiceImpl<typeof CatalogueService> {
  const ops = deps.ops.catalogue;
  return {
    async listModels(req, ctx) {
      return create(ListModelsResponseSchema, {
        models: (await ops.list(await caller(deps.authenticate, ctx), req.includeRetired)).map(modelMessage),
      });
    },
    async getModel(req, ctx) {
      return { model: modelMessage(await ops.get(await caller(deps.authenticate, ctx), req.modelId)) };
    },
    async createModel(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const m = req.model;
      if (!m) throw invalidField("model", "is required");
      const model = await ops.create(who, {
        id: m.id,
        name: m.name,
        provider: m.provider,
        upstreamModel: m.upstreamModel,
        tier: tierFromProto(m.tier),
        prices: prices(m.prices),
        contextWindow: m.contextWindow,
        maxOutputTokens: m.maxOutputTokens,
        expectedOutputTokens: m.expectedOutputTokens,
      });
      return { model: modelMessage(model) };
    },
    async updateModel(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const model = await ops.update(who, {
        modelId: req.modelId,
        name: req.name,
        upstreamModel: req.upstreamModel,
        tier: req.tier === Tier.UNSPECIFIED ? undefined : tierFromProto(req.tier),
        prices: prices(req.prices),
        contextWindow: req.contextWindow,
        maxOutputTokens: req.maxOutputTokens,
        expectedOutputTokens: req.expectedOutputTokens,
      });
      return { model: modelMessage(model) };
    },
    async retireModel(req, ctx) {
      return { model: modelMessage(await ops.retire(await caller(deps.authenticate, ctx), req.modelId)) };
    },
    async listProviders(_req, ctx) {
      const providers = await ops.providers(await caller(deps.authenticate, ctx));
      return { providers: providers.map((p) => create(ProviderSchema, { id: p.id, basePath: p.basePath })) };
    },
  };
}
