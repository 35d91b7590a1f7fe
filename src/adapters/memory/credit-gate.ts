import type { CreditGate, CreditReserveOutcome } from "../../domain/admission.js";
import type { BudgetHold, SpendTotal } from "../../domain/budgets.js";
import { clampBalance, type CreditReservations } from "../../domain/credits.js";
import type { BalanceChange, BalanceSource, ExpiredReservation } from "../../domain/metering.js";
import { nanos, type Nanos } from "../../domain/money.js";

interface AccountCredit {
  balance: bigint;
  version: number;
  held: bigint;
  reservations: Map<string, { amount: bigint; expiresAt: number; keyId?: string }>;
  /** Open reservations per key (what its budget holds). */
  keyHeld: Map<string, bigint>;
  /** Spend totals by spendField(scope, period), as of `version`. */
  spent: Map<string, bigint>;
}

/** Default bound on one account's unsettled reservations (config credits.max_open_reservations_per_account). */
export const DEFAULT_MAX_OPEN_PER_ACCOUNT = 10_000;
/** Default bound on one in-process gate's unsettled reservations (config credits.max_open_reservations_total). */
export const DEFAULT_MAX_OPEN_TOTAL = 200_000;

/** Options for the in-process gate. */
export interface MemoryCreditGateOptions {
  source: BalanceSource;
  reservationTtlMs: number;
  /** Open reservations one account may hold; more are refused (429) until some settle or expire. */
  maxOpenPerAccount?: number;
  /** Open reservations this gate holds in all; bounds its memory whatever the admission rate × TTL. */
  maxOpenTotal?: number;
  /**
   * Whether this process may admit at all, asked synchronously on every reservation (the single-admission lease is
   * still current). When it answers false the reservation throws: admission answers 503 and nothing is held.
   */
  admitting?(): boolean;
  /** The clock budget periods are read with when balances load (the control plane's clock). */
  clock?: () => number;
}

/** An open reservation as it is handed from one admission process to its successor (through SQL). */
export interface HeldReservation {
  accountId: string;
  decisionId: string;
  amount: Nanos;
  expiresAt: number;
  /** The key it was admitted for: the successor holds it against the key's budget and charges its expiry there. */
  keyId?: string;
}

/** Thrown when the process no longer holds the single-admission lease (or cannot tell): a 503, never an admission. */
export class NotAdmittingError extends Error {
  override name = "NotAdmittingError";
  constructor() {
    super("this authz process does not currently hold the single-admission lease; it admits nothing");
  }
}

/** The in-process gate, plus the hand-over of its open reservations across a restart. */
export interface MemoryCreditGate extends CreditReservations {
  /** Every open reservation, oldest first (written to SQL when the process releases the admission lease). */
  held(): HeldReservation[];
  /** Takes over reservations a predecessor held (before any admission): they stay held until settled or expired. */
  restore(reservations: readonly HeldReservation[]): Promise<void>;
  /** Refuses new reservations (503 unavailable, Retry-After) until `until` (ms): a predecessor's may be unknown. */
  fence(until: number): void;
}

/**
 * Credit reservations in process memory, for the embedded default (one process runs authz and meter). Balances are
 * loaded from SQL on first use and move only by committed changes applied in version order, so the cached balance
 * is always some committed SQL balance; the check-and-hold runs synchronously after the load, so concurrent
 * admissions cannot both take the last credit.
 */
export function createMemoryCreditGate(options: MemoryCreditGateOptions): MemoryCreditGate {
  const perAccount = options.maxOpenPerAccount ?? DEFAULT_MAX_OPEN_PER_ACCOUNT;
  const total = options.maxOpenTotal ?? DEFAULT_MAX_OPEN_TOTAL;
  /** Reservations open in every account, kept beside the maps so the bound costs nothing to check. */
  let open = 0;
  let fencedUntil = -Infinity;
  const accounts = new Map<string, AccountCredit>();
  const loading = new Map<string, Promise<AccountCredit>>();

  /** The check-and-hold, run with nothing awaited between the account's load and the hold. */
  function hold(
    state: AccountCredit,
    { decisionId, amount, now, keyId, budgets }: Parameters<CreditGate["reserve"]>[0],
  ): CreditReserveOutcome {
    if (options.admitting && !options.admitting()) throw new NotAdmittingError();
    if (state.reservations.has(decisionId)) return { reserved: true };
    if (now < fencedUntil)
      return { reserved: false, fenced: true, retryAfterSeconds: Math.max(1, Math.ceil((fencedUntil - now) / 1000)) };
    if (state.reservations.size >= perAccount) return { reserved: false, inFlight: "account", limit: perAccount };
    if (open >= total) return { reserved: false, inFlight: "total", limit: total };
    const available = state.balance - state.held;
    if (amount > available) return { reserved: false, available: nanos(available > 0n ? available : 0n) as Nanos };
    // After the balance, as the Redis scripts decide: a credit refusal outranks a budget's.
    if (budgets) {
      const over = overBudget(state, keyId, amount, budgets);
      if (over) return { reserved: false, budget: over };
    }
    state.reservations.set(decisionId, { amount, expiresAt: now + options.reservationTtlMs, keyId });
    state.held += amount;
    if (keyId !== undefined) state.keyHeld.set(keyId, (state.keyHeld.get(keyId) ?? 0n) + amount);
    open++;
    return { reserved: true };
  }

  function account(accountId: string): AccountCredit | Promise<AccountCredit> {
    const known = accounts.get(accountId);
    if (known) return known;
    let pending = loading.get(accountId);
    if (!pending) {
      pending = options.source.balances([accountId], options.clock?.() ?? Date.now()).then((loaded) => {
        const row = loaded.get(accountId) ?? { balance: nanos(0n), version: 0 };
        const created: AccountCredit = {
          balance: clampBalance(row.balance),
          version: row.version,
          held: 0n,
          reservations: new Map(),
          keyHeld: new Map(),
          spent: new Map((row.spend ?? []).map((t) => [t.field, t.spent])),
        };
        accounts.set(accountId, accounts.get(accountId) ?? created);
        return accounts.get(accountId)!;
      });
      loading.set(accountId, pending);
      pending.finally(() => loading.delete(accountId)).catch(() => {});
    }
    return pending;
  }

  function apply(state: AccountCredit, balance: bigint, version: number, spend?: readonly SpendTotal[]): void {
    // Newer committed state wins; an older or equal version was already reflected.
    if (version > state.version) {
      state.balance = clampBalance(balance);
      state.version = version;
      for (const t of spend ?? []) state.spent.set(t.field, t.spent);
    }
  }

  function release(state: AccountCredit, decisionId: string): void {
    const r = state.reservations.get(decisionId);
    if (!r) return;
    state.reservations.delete(decisionId);
    state.held -= r.amount;
    if (r.keyId !== undefined) {
      const left = (state.keyHeld.get(r.keyId) ?? 0n) - r.amount;
      if (left > 0n) state.keyHeld.set(r.keyId, left);
      else state.keyHeld.delete(r.keyId);
    }
    open--;
  }

  /** The first budget this amount does not fit in: spent in its period + open reservations + amount > limit. */
  function overBudget(
    state: AccountCredit,
    keyId: string | undefined,
    amount: bigint,
    budgets: readonly BudgetHold[],
  ): BudgetHold | undefined {
    for (const b of budgets) {
      const held = b.scope === "key" ? (keyId === undefined ? 0n : (state.keyHeld.get(keyId) ?? 0n)) : state.held;
      if ((state.spent.get(b.field) ?? 0n) + held + amount > b.limit) return b;
    }
    return undefined;
  }

  return {
    reserve(request) {
      const found = account(request.accountId);
      // A loaded account decides synchronously: no promise and no microtask on the warm path of every Check.
      return found instanceof Promise ? found.then((state) => hold(state, request)) : hold(found, request);
    },
    async committed(changes: readonly BalanceChange[]) {
      for (const change of changes) {
        const state = accounts.get(change.accountId);
        if (!state) continue;
        if (change.version >= 0) apply(state, change.balance, change.version, change.spend);
        for (const decisionId of change.settled) release(state, decisionId);
      }
    },
    async expired(now) {
      const out: ExpiredReservation[] = [];
      for (const [accountId, state] of accounts) {
        // Reservations are inserted in admission order with one TTL, so they expire in order: stop at the first live one.
        for (const [decisionId, r] of state.reservations) {
          if (r.expiresAt > now) break;
          out.push({ accountId, decisionId, amount: nanos(r.amount), keyId: r.keyId });
        }
      }
      return out;
    },
    async refresh() {
      if (accounts.size === 0) return;
      const loaded = await options.source.balances([...accounts.keys()], options.clock?.() ?? Date.now());
      for (const [accountId, row] of loaded) {
        const state = accounts.get(accountId);
        if (state) apply(state, row.balance, row.version, row.spend);
      }
    },
    async budgetUsage(accountId, keyId, budgets) {
      const found = account(accountId);
      const state = found instanceof Promise ? await found : found;
      return budgets.map((hold) => ({
        hold,
        spent: nanos(state.spent.get(hold.field) ?? 0n),
        held: nanos(hold.scope === "key" ? (state.keyHeld.get(keyId) ?? 0n) : state.held),
      }));
    },
    async openReservations() {
      return open;
    },
    held() {
      const out: HeldReservation[] = [];
      for (const [accountId, state] of accounts) {
        for (const [decisionId, r] of state.reservations)
          out.push({ accountId, decisionId, amount: nanos(r.amount), expiresAt: r.expiresAt, keyId: r.keyId });
      }
      return out.sort((a, b) => a.expiresAt - b.expiresAt);
    },
    async restore(reservations) {
      const ids = [...new Set(reservations.map((r) => r.accountId))];
      for (const accountId of ids) {
        const found = account(accountId);
        if (found instanceof Promise) await found;
      }
      // Oldest first, before any admission: expiry still meets them in order (see expired).
      for (const r of [...reservations].sort((a, b) => a.expiresAt - b.expiresAt)) {
        const state = accounts.get(r.accountId)!;
        if (state.reservations.has(r.decisionId)) continue;
        state.reservations.set(r.decisionId, { amount: r.amount, expiresAt: r.expiresAt, keyId: r.keyId });
        state.held += r.amount;
        if (r.keyId !== undefined) state.keyHeld.set(r.keyId, (state.keyHeld.get(r.keyId) ?? 0n) + r.amount);
        open++;
      }
    },
    fence(until) {
      fencedUntil = Math.max(fencedUntil, until);
    },
    async close() {
      // Nothing to free: the reservations are still read by the lease's hand-over, which runs after this closes.
    },
  };
}
