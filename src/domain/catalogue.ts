import type { PicoPerToken } from "./money.js";

/** Model tiers: plans grant access by tier, keys may narrow further by model. */
export type Tier = "basic" | "premium";
/** The tiers in a stable order, for validation and listings. */
export const TIERS: readonly Tier[] = ["basic", "premium"];

/** Prices in force for a model, exact per token. */
export interface Prices {
  input: PicoPerToken;
  cachedInput: PicoPerToken;
  output: PicoPerToken;
}

/** A model as clients name it, and where and how it is served. */
export interface CatalogueModel {
  id: string;
  displayName: string;
  provider: string;
  upstreamModel: string;
  tier: Tier;
  prices: Prices;
  contextWindow: number;
  maxOutputTokens: number;
  retired: boolean;
}

/** A provider's OpenAI-compatible endpoint: the path prefix that replaces the client's `/v1`. */
export interface Provider {
  id: string;
  basePath: string;
}

/** A plan: limits per key and which tiers its keys may reach. */
export interface Plan {
  id: string;
  displayName: string;
  requestsPerMinute: number;
  tokensPerMinute: number;
  tiers: readonly Tier[];
}

/**
 * The compiled, immutable view of catalogue, plans and providers that Check reads. Built once from storage and
 * swapped atomically when anything changes, so the hot path never sees a half-applied update.
 */
export interface CatalogueSnapshot {
  models: ReadonlyMap<string, CatalogueModel>;
  plans: ReadonlyMap<string, Plan>;
  providers: ReadonlyMap<string, Provider>;
}

/** Builds a snapshot from plain lists. */
export function compileSnapshot(input: {
  models: readonly CatalogueModel[];
  plans: readonly Plan[];
  providers: readonly Provider[];
}): CatalogueSnapshot {
  return {
    models: new Map(input.models.map((m) => [m.id, m])),
    plans: new Map(input.plans.map((p) => [p.id, p])),
    providers: new Map(input.providers.map((p) => [p.id, p])),
  };
}

/** Why a model is out of reach for a key, or `undefined` when it may be used. */
export function modelRefusal(
  model: CatalogueModel,
  plan: Plan,
  keyAllowList: readonly string[] | null,
): "plan_tier" | "key_scope" | undefined {
  if (!plan.tiers.includes(model.tier)) return "plan_tier";
  if (keyAllowList !== null && !keyAllowList.includes(model.id)) return "key_scope";
  return undefined;
}

/** The active models a key may use, in catalogue order: what GET /v1/models shows that key. */
export function modelsForKey(
  snapshot: CatalogueSnapshot,
  plan: Plan,
  keyAllowList: readonly string[] | null,
): CatalogueModel[] {
  return [...snapshot.models.values()].filter((m) => !m.retired && modelRefusal(m, plan, keyAllowList) === undefined);
}
