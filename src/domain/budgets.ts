import { formatUsd, MAX_BALANCE_NANOS, type Nanos } from "./money.js";

// Spend caps (issue 14): a key or an account may carry a budget in nano-USD per period. Admission holds the
// request's worst-case cost against it exactly as against the balance: spent in the period + open reservations +
// this request must fit, so concurrent requests can never overrun it. The meter adds what each request really cost
// to the period in force when it bills it (spend_totals, in the ledger's transaction).

/** The periods a budget may cover; `lifetime` never resets. */
export type BudgetPeriod = "day" | "week" | "month" | "lifetime";

/** Every period, in a stable order (validation, listings, the meter's totals). */
export const BUDGET_PERIODS: readonly BudgetPeriod[] = ["day", "week", "month", "lifetime"];

/** A spend cap: at most `limit` nano-USD per `period`. */
export interface Budget {
  limit: Nanos;
  period: BudgetPeriod;
}

/** The largest budget: an account's largest balance (so every gate compares it exactly). */
export const MAX_BUDGET_NANOS: Nanos = MAX_BALANCE_NANOS;

/** One period as a time window: `id` names it in the spend totals, `end` is when it resets (null: never). */
export interface PeriodWindow {
  id: string;
  start: number;
  end: number | null;
}

/** Whether `value` names a budget period. */
export function isBudgetPeriod(value: string): value is BudgetPeriod {
  return (BUDGET_PERIODS as readonly string[]).includes(value);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Whether `timeZone` is an IANA time zone this runtime knows ("UTC", "Europe/Paris"). */
export function isTimeZone(timeZone: string): boolean {
  if (timeZone === "" || timeZone.length > 64) return false;
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The wall-clock fields of instant `t` in `timeZone`. */
function wallClock(t: number, timeZone: string): { y: number; m: number; d: number; ms: number } {
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(t)) if (p.type !== "literal") parts[p.type] = Number(p.value);
  const ms = Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
  return { y: parts.year!, m: parts.month!, d: parts.day!, ms };
}

/** The instant at which `timeZone`'s wall clock reads the UTC-encoded `local` (the first, across a DST gap). */
function instantOf(local: number, timeZone: string): number {
  let guess = local;
  for (let i = 0; i < 3; i++) {
    const offset = wallClock(guess, timeZone).ms - Math.floor(guess / 1000) * 1000;
    const next = local - offset;
    if (next === guess) break;
    guess = next;
  }
  // Inside a DST gap (a midnight that does not exist) the iteration may settle before the gap, where the wall clock
  // still reads the day before: the period begins at the gap's end, the first instant that reads `local` or later.
  const reads = wallClock(guess, timeZone).ms;
  return reads < local ? guess + (local - reads) : guess;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

function computeWindow(period: BudgetPeriod, timeZone: string, now: number): PeriodWindow {
  if (period === "lifetime") return { id: "lifetime", start: 0, end: null };
  const { y, m, d } = wallClock(now, timeZone);
  let start: number;
  let end: number;
  let id: string;
  if (period === "month") {
    start = Date.UTC(y, m - 1, 1);
    end = Date.UTC(y, m, 1);
    id = `month:${y}-${pad(m)}`;
  } else {
    const day = Date.UTC(y, m - 1, d);
    // ISO weeks start on Monday (getUTCDay: 0 is Sunday).
    start = period === "day" ? day : day - ((new Date(day).getUTCDay() + 6) % 7) * 86_400_000;
    end = start + (period === "day" ? 1 : 7) * 86_400_000;
    id = `${period}:${new Date(start).toISOString().slice(0, 10)}`;
  }
  return { id, start: instantOf(start, timeZone), end: instantOf(end, timeZone) };
}

const windows = new Map<string, PeriodWindow>();

/**
 * The period containing `now` in the account's time zone (UTC when it sets none). Cached per zone and period until
 * it ends, so the hot path formats a date once per period, not per Check.
 */
export function periodWindow(period: BudgetPeriod, timeZone: string | null | undefined, now: number): PeriodWindow {
  const zone = timeZone || "UTC";
  const cacheKey = `${zone}\u0000${period}`;
  const cached = windows.get(cacheKey);
  if (cached && cached.start <= now && (cached.end === null || now < cached.end)) return cached;
  const computed = computeWindow(period, zone, now);
  if (windows.size > 10_000) windows.clear();
  windows.set(cacheKey, computed);
  return computed;
}

/** The ids of every period containing `now`: what the meter adds a request's cost to. */
export function spendPeriods(timeZone: string | null | undefined, now: number): string[] {
  return BUDGET_PERIODS.map((p) => periodWindow(p, timeZone, now).id);
}

/** The name of one scope's (key id or account id) spend in one period, as gates and the meter key it. */
export function spendField(scopeId: string, periodId: string): string {
  return `${scopeId}|${periodId}`;
}

/** A budget admission must hold a request against: whose it is, its spend total's name, its limit. */
export interface BudgetHold {
  scope: "key" | "account";
  /** spendField(scope id, period id) */
  field: string;
  limit: Nanos;
  budget: Budget;
  window: PeriodWindow;
}

/**
 * The budgets a request of this key must fit in at `now` (the key's, then the account's), or undefined when neither
 * has one: two property reads on the hot path of a key without budgets.
 */
export function budgetHolds(
  key: { id: string; budget?: Budget | null },
  account: { id: string; budget?: Budget | null; timeZone?: string | null },
  now: number,
): BudgetHold[] | undefined {
  if (!key.budget && !account.budget) return undefined;
  const holds: BudgetHold[] = [];
  for (const [scope, id, budget] of [
    ["key", key.id, key.budget],
    ["account", account.id, account.budget],
  ] as const) {
    if (!budget) continue;
    const window = periodWindow(budget.period, account.timeZone, now);
    holds.push({ scope, field: spendField(id, window.id), limit: budget.limit, budget, window });
  }
  return holds;
}

/** One scope's spend total in one period after a commit (absolute, so caches may apply it more than once). */
export interface SpendTotal {
  field: string;
  spent: Nanos;
}

/** What a key may still spend: its budget, the period's window, and what is spent and held in it. */
export interface BudgetStatus {
  scope: "key" | "account";
  limit: Nanos;
  period: BudgetPeriod;
  /** When the period began and when it resets (null: lifetime). */
  start: number;
  resetsAt: number | null;
  /** Spend the meter has billed in the period. */
  spent: Nanos;
  /** Worst-case cost of requests admitted and not yet billed. */
  held: Nanos;
}

/** Describes a refusal: which budget, its period, and when it resets. */
export function budgetExceededMessage({ scope, budget, window }: BudgetHold): string {
  const whose = scope === "key" ? "this API key's" : "this account's";
  const cap = `USD ${formatUsd(budget.limit)}`;
  if (budget.period === "lifetime")
    return `The request would exceed ${whose} lifetime budget (${cap}); it does not reset. Ask for a higher budget.`;
  return `The request would exceed ${whose} ${budget.period === "day" ? "daily" : `${budget.period}ly`} budget (${cap} per ${budget.period}); it resets at ${new Date(window.end!).toISOString()}.`;
}

/**
 * The budget figures GET /v1/key shows for a key (its own budget, then its account's), from the credit gate that
 * admits its requests: what admission decides with. Empty when neither has a budget or the gate cannot tell.
 */
export async function keyBudgetStatus(
  gate: {
    budgetUsage?(
      accountId: string,
      keyId: string,
      budgets: readonly BudgetHold[],
    ): Promise<Array<{ hold: BudgetHold; spent: Nanos; held: Nanos }>>;
  },
  key: { id: string; budget?: Budget | null },
  account: { id: string; budget?: Budget | null; timeZone?: string | null },
  now: number,
): Promise<BudgetStatus[]> {
  const holds = budgetHolds(key, account, now);
  if (!holds || !gate.budgetUsage) return [];
  const usage = await gate.budgetUsage(account.id, key.id, holds);
  return usage.map(({ hold, spent, held }) => ({
    scope: hold.scope,
    limit: hold.limit,
    period: hold.budget.period,
    start: hold.window.start,
    resetsAt: hold.window.end,
    spent,
    held,
  }));
}
