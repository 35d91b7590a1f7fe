import type { PlanView, Principal } from "../domain/admin-store.js";
import { AppError, invalidField, NotFoundError } from "../domain/errors.js";
import { audit, nextCatalogueVersion, requireOperator, type AdminContext } from "./admin-context.js";
import { MAX_TOP_UP } from "./credits.js";
import { bigCount, count, id, positive, text } from "./validate.js";

const M = "tollgate.admin.v1.PlanService/";
const MAX_RPM = 10_000_000;
const MAX_TPM = 1_000_000_000_000n;
const MAX_KEYS = 100_000;
const MAX_RPD = 1_000_000_000;
const MAX_TPD = 1_000_000_000_000_000n;
/** Live keys an account may hold when a plan is created without saying. */
export const DEFAULT_MAX_KEYS = 100;
const TIERS = new Set(["basic", "premium"]);

/** A plan as input: limits, tiers and key count; `tiers` are domain tier names. */
export interface PlanInput extends PlanLimits {
  id: string;
  name: string;
  requestsPerMinute: number;
  tokensPerMinute: bigint;
  tiers: readonly string[];
  maxKeys: number;
}

/** A plan's optional limits: expected output for token limits, daily quotas and concurrency per key (0: none). */
export interface PlanLimits {
  expectedOutputTokens?: number;
  requestsPerDay?: number;
  tokensPerDay?: bigint;
  maxConcurrency?: number;
  /** Free credit granted at sign-up and each UTC month, nano-USD (0: none). */
  grantSignupNanos?: bigint;
  grantMonthlyNanos?: bigint;
}

const MAX_OUTPUT = 10_000_000;
const MAX_CONCURRENCY = 1_000_000;

/** Validates the optional limits that are set (0 clears one: null), each error naming its field under `prefix`. */
function planLimits(p: PlanLimits, prefix: string): Partial<PlanView> {
  const out: Partial<PlanView> = {};
  const none = <T>(value: T, zero: T) => (value === zero ? null : value);
  if (p.expectedOutputTokens !== undefined)
    out.expectedOutputTokens = none(count(p.expectedOutputTokens, `${prefix}expected_output_tokens`, MAX_OUTPUT), 0);
  if (p.requestsPerDay !== undefined)
    out.requestsPerDay = none(count(p.requestsPerDay, `${prefix}requests_per_day`, MAX_RPD), 0);
  if (p.tokensPerDay !== undefined)
    out.tokensPerDay = none(bigCount(p.tokensPerDay, `${prefix}tokens_per_day`, MAX_TPD), 0n);
  if (p.maxConcurrency !== undefined)
    out.maxConcurrency = none(count(p.maxConcurrency, `${prefix}max_concurrency`, MAX_CONCURRENCY), 0);
  // A grant is at most what one top-up may add.
  if (p.grantSignupNanos !== undefined)
    out.grantSignupNanos = bigCount(p.grantSignupNanos, `${prefix}grant_signup_nano_usd`, MAX_TOP_UP);
  if (p.grantMonthlyNanos !== undefined)
    out.grantMonthlyNanos = bigCount(p.grantMonthlyNanos, `${prefix}grant_monthly_nano_usd`, MAX_TOP_UP);
  return out;
}

/** Plan use cases (operators): plans are limits, tiers and a key count; changes reach admission within a second. */
export type PlanOperations = ReturnType<typeof createPlanOperations>;

function tiers(values: readonly string[], field: string): string[] {
  if (values.length === 0) throw invalidField(field, "must name at least one tier");
  values.forEach((t, i) => {
    if (!TIERS.has(t)) throw invalidField(`${field}[${i}]`, "must be TIER_BASIC or TIER_PREMIUM");
  });
  return [...new Set(values)];
}

/** Creates the plan use cases. */
export function createPlanOperations(ctx: AdminContext) {
  const { store } = ctx;
  const get = async (planId: string) => {
    const plan = await store.plan(planId);
    if (!plan) throw new NotFoundError(`plan "${planId}" does not exist`);
    return plan;
  };
  const changed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const out = await fn();
    await ctx.events.catalogueChanged();
    return out;
  };
  return {
    async create(who: Principal, p: PlanInput): Promise<PlanView> {
      requireOperator(who);
      const plan = {
        id: id(p.id, "plan.id"),
        name: text(p.name, "plan.name"),
        requestsPerMinute: positive(p.requestsPerMinute, "plan.requests_per_minute", MAX_RPM),
        tokensPerMinute: BigInt(positive(p.tokensPerMinute, "plan.tokens_per_minute", MAX_TPM)),
        tiers: tiers(p.tiers, "plan.tiers"),
        maxKeys: p.maxKeys === 0 ? DEFAULT_MAX_KEYS : positive(p.maxKeys, "plan.max_keys", MAX_KEYS),
        ...planLimits(p, "plan."),
        retired: false,
      };
      return changed(() =>
        store.transaction(async (tx) => {
          if (await tx.plan(plan.id)) throw new AppError("already_exists", `plan "${plan.id}" already exists`);
          const now = await nextCatalogueVersion(tx, ctx.clock());
          await tx.insertPlan({ ...plan, createdAt: now, updatedAt: now });
          await audit(ctx, tx, who, M + "CreatePlan", { plan_id: plan.id });
          return (await tx.plan(plan.id))!;
        }),
      );
    },
    async get(who: Principal, planId: string): Promise<PlanView> {
      requireOperator(who);
      return get(id(planId, "plan_id"));
    },
    async list(who: Principal, includeRetired: boolean): Promise<PlanView[]> {
      requireOperator(who);
      return store.plans(includeRetired);
    },
    async update(
      who: Principal,
      input: {
        planId: string;
        name?: string;
        requestsPerMinute?: number;
        tokensPerMinute?: bigint;
        tiers: readonly string[];
        maxKeys?: number;
      } & PlanLimits,
    ): Promise<PlanView> {
      requireOperator(who);
      const planId = id(input.planId, "plan_id");
      const changes: Partial<PlanView> = {};
      if (input.name !== undefined) changes.name = text(input.name, "name");
      if (input.requestsPerMinute !== undefined)
        changes.requestsPerMinute = positive(input.requestsPerMinute, "requests_per_minute", MAX_RPM);
      if (input.tokensPerMinute !== undefined)
        changes.tokensPerMinute = BigInt(positive(input.tokensPerMinute, "tokens_per_minute", MAX_TPM));
      if (input.tiers.length > 0) changes.tiers = tiers(input.tiers, "tiers");
      if (input.maxKeys !== undefined) changes.maxKeys = positive(input.maxKeys, "max_keys", MAX_KEYS);
      Object.assign(changes, planLimits(input, ""));
      if (Object.keys(changes).length === 0) throw invalidField("plan_id", "nothing to update");
      return changed(() =>
        store.transaction(async (tx) => {
          if (!(await tx.updatePlan(planId, changes, await nextCatalogueVersion(tx, ctx.clock()))))
            throw new NotFoundError(`plan "${planId}" does not exist`);
          await audit(ctx, tx, who, M + "UpdatePlan", { plan_id: planId });
          return (await tx.plan(planId))!;
        }),
      );
    },
    async retire(who: Principal, planIdInput: string): Promise<PlanView> {
      requireOperator(who);
      const planId = id(planIdInput, "plan_id");
      return changed(() =>
        store.transaction(async (tx) => {
          // Admission drops retired plans from its snapshot, so a plan still in use would lock its accounts out.
          const inUse = await tx.accountsOnPlan(planId);
          if (inUse > 0)
            throw new AppError(
              "failed_precondition",
              `plan "${planId}" still has ${inUse} account(s); move them first`,
            );
          if (!(await tx.updatePlan(planId, { retired: true }, await nextCatalogueVersion(tx, ctx.clock()))))
            throw new NotFoundError(`plan "${planId}" does not exist`);
          await audit(ctx, tx, who, M + "RetirePlan", { plan_id: planId });
          return (await tx.plan(planId))!;
        }),
      );
    },
  };
}
