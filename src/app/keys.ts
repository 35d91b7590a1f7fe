import type { AdminRepository, KeyChanges, KeyView, PlanView, Principal } from "../domain/admin-store.js";
import { checkBudget } from "./budgets.js";
import { mintSecret, newId } from "../domain/api-key.js";
import { AppError, denied, invalidField, NotFoundError } from "../domain/errors.js";
import { operatorSet, type KeyLimit, type KeyRecord, type OverrideSetter } from "../domain/keys.js";
import { audit, canSee, requireAccount, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";
import { bigCount, count, id, labels as checkLabels, optionalText } from "./validate.js";
import { keyRevokedEvent, keyRotatedEvent } from "./webhooks.js";

const M = "tollgate.admin.v1.KeyService/";
const MAX_RPM = 10_000_000;
const MAX_TPM = 1_000_000_000_000n;
const MAX_GRACE_MS = 30 * 86_400_000;
const MAX_EXPIRY_MS = 10 * 365 * 86_400_000;
const MAX_MODELS = 500;

/** A key and, at creation or rotation, its secret (shown once). */
export interface IssuedKey {
  key: KeyView;
  secret: string;
}

/** A key's own limits and models; 0 / empty clears one (back to the plan's), which an account may not do to an operator's. */
export interface KeyScope {
  requestsPerMinute?: number;
  tokensPerMinute?: bigint;
  allowedModels?: readonly string[];
  requestsPerDay?: number;
  tokensPerDay?: bigint;
  maxConcurrency?: number;
  /** Spend cap: amount in nano-USD (0 clears) and period ("day", "week", "month", "lifetime"). */
  budgetNanos?: bigint;
  budgetPeriod?: string;
}

const MAX_RPD = 1_000_000_000;
const MAX_TPD = 1_000_000_000_000_000n;
const MAX_CONCURRENCY = 1_000_000;

/** Key use cases: create (within the plan's max_keys), list, narrow, rotate with grace, revoke. */
export type KeyOperations = ReturnType<typeof createKeyOperations>;

type ScopeChanges = Pick<
  KeyChanges,
  | "requestsPerMinute"
  | "tokensPerMinute"
  | "allowedModels"
  | "requestsPerDay"
  | "tokensPerDay"
  | "maxConcurrency"
  | "budget"
> & {
  setBy: NonNullable<KeyChanges["setBy"]>;
};

/**
 * Who a new limit value is recorded as set by, or a refusal. An operator sets anything (0 clears). An account keeps
 * an operator's value in force: it may lower it (the value stays the operator's, so it cannot be raised back) but
 * never clear it; otherwise it may only narrow the plan (0 returns to the plan's).
 */
function limitSetter(
  who: Principal,
  value: bigint,
  planValue: bigint,
  operatorValue: bigint | null,
  field: string,
): OverrideSetter | null {
  if (who.kind === "operator") return value === 0n ? null : "operator";
  if (operatorValue !== null) {
    if (value === 0n)
      throw denied(
        `an operator set this key's limit to ${operatorValue}; an account may lower it but not clear it`,
        field,
      );
    if (value > operatorValue)
      throw denied(`an operator set this key's limit to ${operatorValue}; an account may only lower it`, field);
    return "operator";
  }
  // A plan value of 0 is "none" (no daily quota or concurrency limit): any value narrows it.
  if (planValue > 0n && value > planValue)
    throw denied(`an account may only narrow its keys: the plan allows ${planValue} (an operator may raise it)`, field);
  return value === 0n ? null : "account";
}

/** The operator-set value of a key's limit that an account must respect, or null. */
function heldLimit(current: KeyRecord | undefined, field: KeyLimit): bigint | null {
  return current && operatorSet(current, field) ? BigInt(current[field]!) : null;
}

/**
 * Validates a key's model list and records who set it. An operator's list is the key's whole scope (any catalogue
 * model, past the plan's tiers); an account may only narrow an operator's list (never clear it), or else list models
 * of the plan's tiers (an empty list returns to the plan's).
 */
async function checkModels(
  tx: AdminRepository,
  who: Principal,
  plan: PlanView,
  models: readonly string[],
  field: string,
  current: KeyRecord | undefined,
): Promise<Pick<ScopeChanges, "allowedModels"> & { setter: OverrideSetter | null }> {
  if (models.length > MAX_MODELS) throw invalidField(field, `at most ${MAX_MODELS} models`);
  for (const [i, m] of models.entries()) id(m, `${field}[${i}]`);
  const tiers = await tx.modelTiers(models);
  const held = current && operatorSet(current, "allowedModels") ? current.allowedModels! : null;
  if (who.kind === "account" && held !== null && models.length === 0) {
    throw denied("an operator set this key's models; an account may narrow them but not clear them", field);
  }
  models.forEach((m, i) => {
    const tier = tiers.get(m);
    if (tier === undefined) throw invalidField(`${field}[${i}]`, `model "${m}" is not in the catalogue`);
    if (who.kind === "operator") return;
    if (held !== null && !held.includes(m))
      throw denied(`model "${m}" is not among the models an operator set for this key`, `${field}[${i}]`);
    if (held === null && !plan.tiers.includes(tier))
      throw denied(`model "${m}" is not in the plan's tiers (${plan.tiers.join(", ")})`, `${field}[${i}]`);
  });
  if (models.length === 0) return { allowedModels: null, setter: null };
  return {
    allowedModels: [...new Set(models)],
    setter: who.kind === "operator" || held !== null ? "operator" : "account",
  };
}

/**
 * Validates a key's limits and model scope and records who set each one (see limitSetter and checkModels): an
 * operator's values stand as set at admission; an account's only narrow the plan in force there.
 */
async function checkScope(
  tx: AdminRepository,
  who: Principal,
  plan: PlanView,
  scope: KeyScope,
  modelsField: string,
  current?: KeyRecord,
): Promise<ScopeChanges> {
  const out: ScopeChanges = { setBy: {} };
  if (scope.requestsPerMinute !== undefined) {
    const rpm = count(scope.requestsPerMinute, "requests_per_minute", MAX_RPM);
    out.setBy.requestsPerMinute = limitSetter(
      who,
      BigInt(rpm),
      BigInt(plan.requestsPerMinute),
      heldLimit(current, "requestsPerMinute"),
      "requests_per_minute",
    );
    out.requestsPerMinute = rpm || null;
  }
  if (scope.tokensPerMinute !== undefined) {
    const tpm = bigCount(scope.tokensPerMinute, "tokens_per_minute", MAX_TPM);
    out.setBy.tokensPerMinute = limitSetter(
      who,
      tpm,
      plan.tokensPerMinute,
      heldLimit(current, "tokensPerMinute"),
      "tokens_per_minute",
    );
    out.tokensPerMinute = tpm || null;
  }
  const daily: Array<[KeyLimit & keyof KeyScope, string, bigint, bigint | null | undefined]> = [
    [
      "requestsPerDay",
      "requests_per_day",
      BigInt(MAX_RPD),
      plan.requestsPerDay == null ? 0n : BigInt(plan.requestsPerDay),
    ],
    ["tokensPerDay", "tokens_per_day", MAX_TPD, plan.tokensPerDay ?? 0n],
    ["maxConcurrency", "max_concurrency", BigInt(MAX_CONCURRENCY), BigInt(plan.maxConcurrency ?? 0)],
  ];
  for (const [field, name, max, planValue] of daily) {
    const value = scope[field];
    if (value === undefined) continue;
    const n = bigCount(value, name, max);
    out.setBy[field] = limitSetter(who, n, planValue ?? 0n, heldLimit(current, field), name);
    if (field === "tokensPerDay") out.tokensPerDay = n || null;
    else if (field === "requestsPerDay") out.requestsPerDay = Number(n) || null;
    else out.maxConcurrency = Number(n) || null;
  }
  const budget = checkBudget(who, scope, current);
  if (budget) {
    out.budget = budget.budget;
    out.setBy.budget = budget.setter;
  }
  if (scope.allowedModels !== undefined) {
    const models = await checkModels(tx, who, plan, scope.allowedModels, modelsField, current);
    out.allowedModels = models.allowedModels;
    out.setBy.allowedModels = models.setter;
  }
  return out;
}

/** Creates the key use cases. */
export function createKeyOperations(ctx: AdminContext) {
  const { store } = ctx;

  /** The key if the caller may see it; NotFound otherwise, so another account's key ids reveal nothing. */
  const visible = async (tx: AdminRepository, who: Principal, keyId: string, forUpdate = false): Promise<KeyView> => {
    const key = await tx.key(id(keyId, "key_id"), { forUpdate });
    if (!key || !canSee(who, key.accountId)) throw new NotFoundError(`key "${keyId}" does not exist`);
    return key;
  };
  const planOf = async (tx: AdminRepository, accountId: string, forUpdate = false) => {
    const account = await tx.account(accountId, { forUpdate });
    if (!account) throw new NotFoundError(`account "${accountId}" does not exist`);
    const plan = await tx.plan(account.planId);
    if (!plan) throw new AppError("failed_precondition", `the account's plan "${account.planId}" does not exist`);
    return plan;
  };

  return {
    async create(
      who: Principal,
      input: { accountId: string; name: string; labels: Record<string, string>; expiresInMs?: number } & KeyScope,
    ): Promise<IssuedKey> {
      const accountId = id(input.accountId, "account_id");
      requireAccount(who, accountId);
      ctx.writes?.take(who);
      const name = optionalText(input.name, "name");
      const labels = checkLabels(input.labels, "labels");
      const now = ctx.clock();
      let expiresAt: number | null = null;
      if (input.expiresInMs !== undefined) {
        if (!(input.expiresInMs > 0 && input.expiresInMs <= MAX_EXPIRY_MS))
          throw invalidField("expires_in", "must be positive and at most 10 years");
        expiresAt = now + input.expiresInMs;
      }
      const minted = mintSecret();
      const key = await store.transaction(async (tx) => {
        // The account row is held until commit, so two concurrent creations cannot both take the last place.
        const plan = await planOf(tx, accountId, true);
        const scope = await checkScope(
          tx,
          who,
          plan,
          { ...input, allowedModels: input.allowedModels?.length ? input.allowedModels : undefined },
          "allowed_models",
        );
        const live = await tx.liveKeys(accountId, now);
        if (live >= plan.maxKeys)
          throw new AppError(
            "resource_exhausted",
            `the plan allows ${plan.maxKeys} live keys per account and this account has ${live}; revoke one or ask an operator`,
            "max_keys",
          );
        const record: KeyRecord = {
          id: newId("key"),
          accountId,
          name,
          displayPrefix: minted.displayPrefix,
          secretHash: minted.hash,
          previousSecretHash: null,
          previousSecretExpiresAt: null,
          expiresAt,
          revokedAt: null,
          labels,
          allowedModels: scope.allowedModels ?? null,
          requestsPerMinute: scope.requestsPerMinute ?? null,
          tokensPerMinute:
            scope.tokensPerMinute === undefined || scope.tokensPerMinute === null
              ? null
              : Number(scope.tokensPerMinute),
          requestsPerDay: scope.requestsPerDay ?? null,
          tokensPerDay: scope.tokensPerDay == null ? null : Number(scope.tokensPerDay),
          maxConcurrency: scope.maxConcurrency ?? null,
          budget: scope.budget ?? null,
          setBy: Object.fromEntries(Object.entries(scope.setBy).filter(([, setter]) => setter !== null)),
          createdAt: now,
          updatedAt: now,
        };
        await tx.insertKey(record);
        await audit(ctx, tx, who, M + "CreateKey", { key_id: record.id, account_id: accountId });
        return (await tx.key(record.id))!;
      });
      return { key, secret: minted.secret };
    },
    async get(who: Principal, keyId: string): Promise<KeyView> {
      return visible(store, who, keyId);
    },
    async list(
      who: Principal,
      input: { accountId: string; pageSize: number; pageToken: string },
    ): Promise<{ items: KeyView[]; nextPageToken: string }> {
      const accountId =
        input.accountId === "" && who.kind === "account" ? who.accountId : id(input.accountId, "account_id");
      requireAccount(who, accountId);
      if (!(await store.account(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
      const size = pageSize(input.pageSize);
      const scope = `keys:${accountId}`;
      const after = await ctx.pageTokens.decode(input.pageToken, scope, ["time", "id"] as const);
      const rows = await store.keys({ accountId, after, limit: size + 1 });
      return pageOf(ctx.pageTokens, rows, size, scope, (last) => [last.createdAt, last.id]);
    },
    async update(
      who: Principal,
      input: { keyId: string; name?: string; labels?: Record<string, string> } & KeyScope,
    ): Promise<KeyView> {
      const changes: KeyChanges = {};
      if (input.name !== undefined) changes.name = optionalText(input.name, "name");
      if (input.labels !== undefined) changes.labels = checkLabels(input.labels, "labels.labels");
      const scoped =
        input.requestsPerMinute !== undefined ||
        input.tokensPerMinute !== undefined ||
        input.allowedModels !== undefined ||
        input.requestsPerDay !== undefined ||
        input.tokensPerDay !== undefined ||
        input.maxConcurrency !== undefined ||
        input.budgetNanos !== undefined ||
        input.budgetPeriod !== undefined;
      if (Object.keys(changes).length === 0 && !scoped) {
        throw invalidField(
          "key_id",
          "nothing to update (set name, requests_per_minute, tokens_per_minute, requests_per_day, tokens_per_day, max_concurrency, budget_nano_usd, budget_period, allowed_models or labels)",
        );
      }
      ctx.writes?.take(who);
      const key = await store.transaction(async (tx) => {
        const current = await visible(tx, who, input.keyId, true);
        Object.assign(
          changes,
          await checkScope(tx, who, await planOf(tx, current.accountId), input, "allowed_models.models", current),
        );
        await tx.updateKey(current.id, changes, ctx.clock());
        await audit(ctx, tx, who, M + "UpdateKey", { key_id: current.id, account_id: current.accountId });
        return (await tx.key(current.id))!;
      });
      await ctx.events.keyChanged(key.id);
      return key;
    },
    async rotate(who: Principal, input: { keyId: string; graceMs: number }): Promise<IssuedKey> {
      if (!(input.graceMs >= 0 && input.graceMs <= MAX_GRACE_MS))
        throw invalidField("grace", "must be between 0 and 30 days");
      ctx.writes?.take(who);
      const minted = mintSecret();
      const key = await store.transaction(async (tx) => {
        const current = await visible(tx, who, input.keyId, true);
        if (current.revokedAt !== null) throw new NotFoundError(`key "${current.id}" is revoked and cannot be rotated`);
        const now = ctx.clock();
        const grace = input.graceMs > 0;
        await tx.updateKey(
          current.id,
          {
            secretHash: minted.hash,
            displayPrefix: minted.displayPrefix,
            previousSecretHash: grace ? current.secretHash : null,
            previousSecretExpiresAt: grace ? now + input.graceMs : null,
          },
          now,
        );
        await audit(ctx, tx, who, M + "RotateKey", { key_id: current.id, account_id: current.accountId });
        const rotated = (await tx.key(current.id))!;
        // The outbox row commits with the rotation or not at all: announced if and only if it happened.
        await tx.emitWebhookEvents([keyRotatedEvent(rotated)], now);
        return rotated;
      });
      await ctx.events.keyChanged(key.id);
      return { key, secret: minted.secret };
    },
    async revoke(who: Principal, keyId: string): Promise<KeyView> {
      ctx.writes?.take(who);
      const key = await store.transaction(async (tx) => {
        const current = await visible(tx, who, keyId, true);
        const now = ctx.clock();
        if (current.revokedAt === null) await tx.updateKey(current.id, { revokedAt: now }, now);
        await audit(ctx, tx, who, M + "RevokeKey", { key_id: current.id, account_id: current.accountId });
        const revoked = (await tx.key(current.id))!;
        if (current.revokedAt === null) await tx.emitWebhookEvents([keyRevokedEvent(revoked)], now);
        return revoked;
      });
      await ctx.events.keyChanged(key.id);
      return key;
    },
  };
}
