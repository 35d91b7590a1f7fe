import { createAccountOperations } from "./accounts.js";
import type { AdminContext } from "./admin-context.js";
import { createAdminTokenOperations } from "./admin-tokens.js";
import { createAuditOperations } from "./audit.js";
import { createBudgetOperations } from "./budgets.js";
import { createCatalogueOperations } from "./catalogue.js";
import { createConsoleSessionOperations } from "./console-sessions.js";
import { createCreditOperations } from "./credits.js";
import { createKeyLimitOperations } from "./key-limits.js";
import { createKeyOperations } from "./keys.js";
import { createPlanOperations } from "./plans.js";
import { createUsageOperations } from "./usage.js";
import { createWebhookOperations } from "./webhooks.js";

/** Every admin use case, by concept: what the admin services (and nothing else) call. */
export type AdminOperations = ReturnType<typeof createAdminOperations>;

/** Builds the admin use cases over one context (store port, change events, clock, fee). */
export function createAdminOperations(ctx: AdminContext) {
  return {
    accounts: createAccountOperations(ctx),
    keys: createKeyOperations(ctx),
    keyLimits: createKeyLimitOperations(ctx),
    budgets: createBudgetOperations(ctx, ctx.credits),
    credits: createCreditOperations(ctx),
    plans: createPlanOperations(ctx),
    catalogue: createCatalogueOperations(ctx),
    tokens: createAdminTokenOperations(ctx),
    sessions: createConsoleSessionOperations(ctx, ctx.consoleSessionTtlMs),
    audit: createAuditOperations(ctx),
    usage: createUsageOperations(ctx),
    webhooks: createWebhookOperations(ctx),
    /** Whether the store answers (readiness). */
    ping: () => ctx.store.ping(),
  };
}
