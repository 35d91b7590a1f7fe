import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { AccountView, KeyView, ModelView, PlanView } from "../domain/admin-store.js";
import type { BudgetStatus } from "../domain/budgets.js";
import { invalidField } from "../domain/errors.js";
import { AccountSchema, type Account } from "../gen/tollgate/admin/v1/accounts_pb.js";
import {
  BudgetStatusSchema,
  KeySchema,
  type BudgetStatus as BudgetStatusMessage,
  type Key,
} from "../gen/tollgate/admin/v1/keys_pb.js";
import { ModelSchema, PricesSchema, Tier, type Model } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { PlanSchema, type Plan } from "../gen/tollgate/admin/v1/plans_pb.js";

/** An epoch-ms time as a protobuf Timestamp (absent stays absent). */
export const ts = (ms: number | null | undefined) =>
  ms === null || ms === undefined ? undefined : timestampFromMs(ms);

/** A protobuf Timestamp as epoch ms, or InvalidArgument naming the field when it is not a representable time. */
export function msOf(value: Timestamp | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = timestampMs(value);
  if (!Number.isSafeInteger(ms) || ms < 0) throw invalidField(field, "must be a valid time after 1970");
  return ms;
}

/** An account as the API shows it. */
export function accountMessage(a: AccountView): Account {
  return create(AccountSchema, {
    id: a.id,
    name: a.name,
    planId: a.planId,
    suspended: a.suspended,
    budgetNanoUsd: a.budget?.limit ?? 0n,
    budgetPeriod: a.budget?.period ?? "",
    timeZone: a.timeZone ?? "",
    createdAt: ts(a.createdAt),
    updatedAt: ts(a.updatedAt),
  });
}

/** A key as the API shows it: prefix, labels, limits, last use; never a hash. */
export function keyMessage(key: KeyView): Key {
  return create(KeySchema, {
    id: key.id,
    accountId: key.accountId,
    name: key.name,
    displayPrefix: key.displayPrefix,
    labels: { ...key.labels },
    allowedModels: [...(key.allowedModels ?? [])],
    requestsPerMinute: key.requestsPerMinute ?? 0,
    tokensPerMinute: BigInt(key.tokensPerMinute ?? 0),
    requestsPerDay: key.requestsPerDay ?? 0,
    tokensPerDay: BigInt(key.tokensPerDay ?? 0),
    maxConcurrency: key.maxConcurrency ?? 0,
    budgetNanoUsd: key.budget?.limit ?? 0n,
    budgetPeriod: key.budget?.period ?? "",
    expiresAt: ts(key.expiresAt),
    revokedAt: ts(key.revokedAt),
    lastUsedAt: ts(key.lastUsedAt),
    previousSecretExpiresAt: ts(key.previousSecretExpiresAt),
    createdAt: ts(key.createdAt),
    updatedAt: ts(key.updatedAt),
  });
}

const TIER_TO_PROTO: Record<string, Tier> = { basic: Tier.BASIC, premium: Tier.PREMIUM };

/** A domain tier as the proto enum. */
export function tierToProto(tier: string): Tier {
  return TIER_TO_PROTO[tier] ?? Tier.UNSPECIFIED;
}

/** A proto tier as the domain's name ("" for unspecified or unknown: the use case refuses it, naming the field). */
export function tierFromProto(tier: Tier): string {
  return tier === Tier.BASIC ? "basic" : tier === Tier.PREMIUM ? "premium" : "";
}

/** A plan as the API shows it. */
export function planMessage(p: PlanView): Plan {
  return create(PlanSchema, {
    id: p.id,
    name: p.name,
    requestsPerMinute: p.requestsPerMinute,
    tokensPerMinute: p.tokensPerMinute,
    tiers: p.tiers.map(tierToProto),
    maxKeys: p.maxKeys,
    expectedOutputTokens: p.expectedOutputTokens ?? 0,
    requestsPerDay: p.requestsPerDay ?? 0,
    tokensPerDay: p.tokensPerDay ?? 0n,
    maxConcurrency: p.maxConcurrency ?? 0,
    grantSignupNanoUsd: p.grantSignupNanos ?? 0n,
    grantMonthlyNanoUsd: p.grantMonthlyNanos ?? 0n,
    retired: p.retired,
    createdAt: ts(p.createdAt),
    updatedAt: ts(p.updatedAt),
  });
}

/** A model as the API shows it (prices exact, pico-USD per token). */
export function modelMessage(m: ModelView): Model {
  return create(ModelSchema, {
    id: m.id,
    name: m.name,
    provider: m.provider,
    upstreamModel: m.upstreamModel,
    tier: tierToProto(m.tier),
    prices: create(PricesSchema, {
      inputPicoUsdPerToken: m.prices.input,
      cachedInputPicoUsdPerToken: m.prices.cachedInput,
      outputPicoUsdPerToken: m.prices.output,
    }),
    contextWindow: m.contextWindow,
    maxOutputTokens: m.maxOutputTokens,
    expectedOutputTokens: m.expectedOutputTokens ?? 0,
    retired: m.retired,
    createdAt: ts(m.createdAt),
    updatedAt: ts(m.updatedAt),
  });
}

/** A budget's figures as the API shows them. */
export function budgetStatusMessage(b: BudgetStatus): BudgetStatusMessage {
  return create(BudgetStatusSchema, {
    limitNanoUsd: b.limit,
    period: b.period,
    spentNanoUsd: b.spent,
    heldNanoUsd: b.held,
    periodStart: ts(b.start),
    resetsAt: ts(b.resetsAt),
  });
}
