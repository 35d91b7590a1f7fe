import type { BudgetStatus } from "./budgets.js";
import type { CatalogueModel, Plan } from "./catalogue.js";
import type { KeyLimit, ResolvedKey } from "./keys.js";
import { formatUsd, type Nanos } from "./money.js";
import type { LimitFigures, RateLimitState } from "./verdict.js";

/** A key's limits now, without admitting anything: the minute's window, today, and its requests in flight. */
export interface KeyWindows {
  state: RateLimitState;
  /** Requests of the key in flight (admitted, not yet seen ending by the meter, TTL not passed). */
  inFlight: number;
}

/** Reads a key's windows without admitting anything (both limiters implement it beside RateLimiter). */
export interface WindowPeek {
  peek(request: PeekRequest): KeyWindows | Promise<KeyWindows>;
}

/** Which key's windows to read, with the limits that apply to it (0: none). */
export interface PeekRequest extends Record<KeyLimit, number> {
  keyId: string;
  accountId: string;
  now: number;
}

/**
 * What `GET /v1/key` reads beyond the cached key: its windows from the limiter (read-only) and its account's balance
 * from the ledger (the figure `tollgate credits balance` shows). Not on the chat path: a status request may cost a
 * store read.
 */
export interface KeyStatusSource {
  /** Milliseconds until this key may read its status again (0: now); bounds the reads one key causes. */
  throttle?(keyId: string, now: number): number;
  windows(request: PeekRequest): KeyWindows | Promise<KeyWindows>;
  /** The key's and its account's spend caps with what the period holds (keyBudgetStatus over the credit gate). */
  budgets?(resolved: ResolvedKey, now: number): Promise<BudgetStatus[]>;
  balance(accountId: string): Promise<Nanos>;
}

/** One limit as `GET /v1/key` shows it. */
function limitJson(f: LimitFigures | undefined) {
  return f ? { limit: f.limit, remaining: f.remaining, reset_seconds: f.resetSeconds } : null;
}

/**
 * The body of `GET /v1/key`: the calling key's name, plan, models, limits with what remains of each, and its
 * account's balance. `budget` is where the key's spend cap and its spend in the period go (null: no budget shown).
 */
export function keyStatusBody(input: {
  resolved: ResolvedKey;
  plan: Plan;
  models: readonly CatalogueModel[];
  limits: Record<KeyLimit, number>;
  windows: KeyWindows;
  balance: Nanos;
  budget?: Record<string, unknown> | null;
}) {
  const { key, account } = input.resolved;
  const { state, inFlight } = input.windows;
  const { maxConcurrency } = input.limits;
  return {
    object: "key",
    id: key.id,
    name: key.name,
    display_prefix: key.displayPrefix,
    account_id: account.id,
    plan: { id: input.plan.id, name: input.plan.displayName },
    models: input.models.map((m) => m.id),
    expires_at: key.expiresAt === null ? null : new Date(key.expiresAt).toISOString(),
    limits: {
      requests_per_minute: limitJson(state.requests),
      tokens_per_minute: limitJson(state.tokens),
      requests_per_day: limitJson(state.requestsDay),
      tokens_per_day: limitJson(state.tokensDay),
      concurrency:
        maxConcurrency > 0
          ? { limit: maxConcurrency, in_flight: inFlight, remaining: Math.max(0, maxConcurrency - inFlight) }
          : null,
    },
    balance: { balance_nano_usd: input.balance.toString(), balance_usd: formatUsd(input.balance) },
    budget: input.budget ?? null,
  };
}

/** The `budget` of `GET /v1/key`: each spend cap with what is spent, held and left in its period; null without one. */
export function budgetJson(budgets: readonly BudgetStatus[]): Record<string, unknown> | null {
  if (budgets.length === 0) return null;
  const one = (b: BudgetStatus) => {
    const left = b.limit - b.spent - b.held;
    return {
      limit_nano_usd: b.limit.toString(),
      limit_usd: formatUsd(b.limit),
      period: b.period,
      spent_nano_usd: b.spent.toString(),
      held_nano_usd: b.held.toString(),
      remaining_nano_usd: (left > 0n ? left : 0n).toString(),
      period_start: new Date(b.start).toISOString(),
      resets_at: b.resetsAt === null ? null : new Date(b.resetsAt).toISOString(),
    };
  };
  const key = budgets.find((b) => b.scope === "key");
  const account = budgets.find((b) => b.scope === "account");
  return { key: key ? one(key) : null, account: account ? one(account) : null };
}
