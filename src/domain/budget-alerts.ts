import type { Nanos } from "./money.js";
import type { WebhookEventInput } from "./webhooks.js";

/** The soft threshold of every budget: budget.threshold fires when spend in a period crosses this share of it. */
export const BUDGET_SOFT_THRESHOLD_PERCENT = 80;

/** What one commit did to one budget's spend in one period, as the ledger's transaction knows it. */
export interface BudgetSpendChange {
  accountId: string;
  /** A key's budget (keyId set) or the account's. */
  scope: "key" | "account";
  keyId?: string;
  /** "day", "week", "month" or "lifetime". */
  period: string;
  /** The period's window: `id` names it in spend_totals ("day:2026-12-01"); `end` null for lifetime. */
  window: { id: string; start: number; end: number | null };
  budget: Nanos;
  /** Spent in the period before and after the commit. */
  before: bigint;
  after: bigint;
}

/**
 * The budget alerts a spend change causes: budget.threshold when spend crosses BUDGET_SOFT_THRESHOLD_PERCENT of
 * the budget, budget.exhausted when it reaches the budget (both may come from one commit). Each carries a dedupe
 * key per scope and period window, so it is sent once per period however often the crossing is seen. Write them
 * with insertWebhookEvents in the ledger's transaction (or WebhookDeliveryStore.emit after the commit).
 */
export function budgetAlertEvents(change: BudgetSpendChange): WebhookEventInput[] {
  const { budget, before, after } = change;
  if (budget <= 0n || after <= before) return [];
  const scopeId = change.scope === "key" ? change.keyId! : change.accountId;
  const data = (thresholdPercent?: number) => ({
    scope: change.scope,
    ...(change.scope === "key" ? { key_id: change.keyId! } : {}),
    period: change.period,
    budget_nano_usd: budget.toString(),
    spent_nano_usd: after.toString(),
    ...(thresholdPercent === undefined ? {} : { threshold_percent: thresholdPercent }),
    period_start: new Date(change.window.start).toISOString(),
    resets_at: change.window.end === null ? null : new Date(change.window.end).toISOString(),
  });
  const events: WebhookEventInput[] = [];
  const soft = BigInt(BUDGET_SOFT_THRESHOLD_PERCENT);
  if (before * 100n < budget * soft && after * 100n >= budget * soft)
    events.push({
      type: "budget.threshold",
      accountId: change.accountId,
      dedupeKey: `budget.threshold:${scopeId}:${change.window.id}`,
      data: data(BUDGET_SOFT_THRESHOLD_PERCENT),
    });
  if (before < budget && after >= budget)
    events.push({
      type: "budget.exhausted",
      accountId: change.accountId,
      dedupeKey: `budget.exhausted:${scopeId}:${change.window.id}`,
      data: data(),
    });
  return events;
}
