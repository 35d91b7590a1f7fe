import type { KeyRecord } from "./keys.js";
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
  /** Output a request without `max_tokens` is expected to use (tokens-per-minute); unset: the plan's or the default. */
  expectedOutputTokens?: number | null;
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
  /** Output a request without `max_tokens` is expected to use when its model does not say; unset: the default. */
  expectedOutputTokens?: number | null;
  /** Daily quotas per key (UTC days) and requests in flight per key; unset or null: none. */
  requestsPerDay?: number | null;
  tokensPerDay?: number | null;
  maxConcurrency?: number | null;
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

/** What decides a key's models beside its plan: its allow-list and who set it. */
export type KeyModelScope = Pick<KeyRecord, "allowedModels" | "setBy">;

/**
 * Why a model is out of reach for a key, or `undefined` when it may be used. An operator's allow-list is the key's
 * whole scope (it may reach past the plan's tiers); an account's only narrows the plan's tiers.
 */
export function modelRefusal(
  model: CatalogueModel,
  plan: Plan,
  key: KeyModelScope,
): "plan_tier" | "key_scope" | undefined {
  const list = key.allowedModels;
  if (list !== null && key.setBy?.allowedModels === "operator")
    return list.includes(model.id) ? undefined : "key_scope";
  if (!plan.tiers.includes(model.tier)) return "plan_tier";
  if (list !== null && !list.includes(model.id)) return "key_scope";
  return undefined;
}

/** The active models a key may use, in catalogue order: what GET /v1/models shows that key. */
export function modelsForKey(snapshot: CatalogueSnapshot, plan: Plan, key: KeyModelScope): CatalogueModel[] {
  return [...snapshot.models.values()].filter((m) => !m.retired && modelRefusal(m, plan, key) === undefined);
}
