import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { NotFoundError } from "../adapters/sql/account-store.js";
import { big, bool, int, intOrNull } from "../adapters/sql/database.js";
import { keyFromRow } from "../adapters/sql/key-store.js";
import { AccountSchema, type Account } from "../gen/tollgate/admin/v1/accounts_pb.js";
import { KeySchema, type Key } from "../gen/tollgate/admin/v1/keys_pb.js";
import { ModelSchema, PricesSchema, Tier, type Model } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { PlanSchema, type Plan } from "../gen/tollgate/admin/v1/plans_pb.js";
import type { Tier as DomainTier } from "../domain/catalogue.js";

const ts = (ms: number | null | undefined) => (ms === null || ms === undefined ? undefined : timestampFromMs(ms));

/** An `accounts` row as the API shows it. */
export function accountMessage(row: Record<string, unknown>): Account {
  return create(AccountSchema, {
    id: row.id as string,
    name: row.name as string,
    planId: row.plan_id as string,
    suspended: bool(row.suspended),
    createdAt: ts(int(row.created_at)),
    updatedAt: ts(int(row.updated_at)),
  });
}

/** An `api_keys` row as the API shows it: prefix, labels, limits, last use; never a hash. */
export function keyMessage(row: Record<string, unknown>): Key {
  const key = keyFromRow(row);
  return create(KeySchema, {
    id: key.id,
    accountId: key.accountId,
    name: key.name,
    displayPrefix: key.displayPrefix,
    labels: { ...key.labels },
    allowedModels: [...(key.allowedModels ?? [])],
    requestsPerMinute: key.requestsPerMinute ?? 0,
    tokensPerMinute: BigInt(key.tokensPerMinute ?? 0),
    expiresAt: ts(key.expiresAt),
    revokedAt: ts(key.revokedAt),
    lastUsedAt: ts(intOrNull(row.last_used_at)),
    previousSecretExpiresAt: ts(key.previousSecretExpiresAt),
    createdAt: ts(key.createdAt),
    updatedAt: ts(key.updatedAt),
  });
}

const TIER_TO_PROTO: Record<DomainTier, Tier> = { basic: Tier.BASIC, premium: Tier.PREMIUM };

/** A domain tier as the proto enum. */
export function tierToProto(tier: string): Tier {
  return TIER_TO_PROTO[tier as DomainTier] ?? Tier.UNSPECIFIED;
}

/** A proto tier as the domain's, or InvalidArgument naming the field. */
export function tierFromProto(tier: Tier, field: string): DomainTier {
  if (tier === Tier.BASIC) return "basic";
  if (tier === Tier.PREMIUM) return "premium";
  throw new ConnectError(`${field}: must be TIER_BASIC or TIER_PREMIUM`, Code.InvalidArgument);
}

/** A `plans` row as the API shows it. */
export function planMessage(row: Record<string, unknown>): Plan {
  return create(PlanSchema, {
    id: row.id as string,
    name: row.name as string,
    requestsPerMinute: int(row.requests_per_minute),
    tokensPerMinute: big(row.tokens_per_minute),
    tiers: (JSON.parse(row.tiers as string) as string[]).map(tierToProto),
    retired: bool(row.retired),
    createdAt: ts(int(row.created_at)),
    updatedAt: ts(int(row.updated_at)),
  });
}

/** A `models` row as the API shows it (prices exact, pico-USD per token). */
export function modelMessage(row: Record<string, unknown>): Model {
  return create(ModelSchema, {
    id: row.id as string,
    name: row.name as string,
    provider: row.provider as string,
    upstreamModel: row.upstream_model as string,
    tier: tierToProto(row.tier as string),
    prices: create(PricesSchema, {
      inputPicoUsdPerToken: big(row.price_input),
      cachedInputPicoUsdPerToken: big(row.price_cached_input),
      outputPicoUsdPerToken: big(row.price_output),
    }),
    contextWindow: int(row.context_window),
    maxOutputTokens: int(row.max_output_tokens),
    retired: bool(row.retired),
    createdAt: ts(int(row.created_at)),
    updatedAt: ts(int(row.updated_at)),
  });
}

/** Runs a store call, turning its NotFoundError into Code.NotFound; anything else is an infrastructure fault. */
export async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof NotFoundError) throw new ConnectError(error.message, Code.NotFound);
    throw error;
  }
}

/** NotFound for `what` (also answered for rows the caller may not see, so existence never leaks). */
export function notFound(what: string): ConnectError {
  return new ConnectError(`${what} does not exist`, Code.NotFound);
}
