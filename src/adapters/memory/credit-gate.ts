import type { CreditReservations } from "../../domain/credits.js";
import type { BalanceChange, BalanceSource, ExpiredReservation } from "../../domain/metering.js";
import { nanos, type Nanos } from "../../domain/money.js";

interface AccountCredit {
  balance: bigint;
  version: number;
  held: bigint;
  reservations: Map<string, { amount: bigint; expiresAt: number }>;
}

/**
 * Credit reservations in process memory, for the embedded default (one process runs authz and meter). Balances are
 * loaded from SQL on first use and move only by committed changes applied in version order, so the cached balance
 * is always some committed SQL balance; the check-and-hold runs synchronously after the load, so concurrent
 * admissions cannot both take the last credit.
 */
export function createMemoryCreditGate(options: { source: BalanceSource; reservationTtlMs: number }): CreditReservations {
  const accounts = new Map<string, AccountCredit>();
  const loading = new Map<string, Promise<AccountCredit>>();

  function account(accountId: string): AccountCredit | Promise<AccountCredit> {
    const known = accounts.get(accountId);
    if (known) return known;
    let pending = loading.get(accountId);
    if (!pending) {
      pending = options.source.balances([accountId]).then((loaded) => {
        const row = loaded.get(accountId) ?? { balance: nanos(0n), version: 0 };
        const created: AccountCredit = { balance: row.balance, version: row.version, held: 0n, reservations: new Map() };
        accounts.set(accountId, accounts.get(accountId) ?? created);
        return accounts.get(accountId)!;
      });
      loading.set(accountId, pending);
      pending.finally(() => loading.delete(accountId)).catch(() => {});
    }
    return pending;
  }

  function apply(state: AccountCredit, balance: bigint, version: number): void {
    // Newer committed state wins; an older or equal version was already reflected.
    if (version > state.version) {
      state.balance = balance;
      state.version = version;
    }
  }

  return {
    async reserve({ accountId, decisionId, amount, now }) {
      const found = account(accountId);
      const state = found instanceof Promise ? await found : found;
      if (state.reservations.has(decisionId)) return { reserved: true };
      const available = state.balance - state.held;
      if (amount > available) return { reserved: false, available: nanos(available > 0n ? available : 0n) as Nanos };
      state.reservations.set(decisionId, { amount, expiresAt: now + options.reservationTtlMs });
      state.held += amount;
      return { reserved: true };
    },
    async committed(changes: readonly BalanceChange[]) {
      for (const change of changes) {
        const state = accounts.get(change.accountId);
        if (!state) continue;
        if (change.version >= 0) apply(state, change.balance, change.version);
        for (const decisionId of change.settled) {
          const r = state.reservations.get(decisionId);
          if (!r) continue;
          state.reservations.delete(decisionId);
          state.held -= r.amount;
        }
      }
    },
    async expired(now) {
      const out: ExpiredReservation[] = [];
      for (const [accountId, state] of accounts) {
        // Reservations are inserted in admission order with one TTL, so they expire in order: stop at the first live one.
        for (const [decisionId, r] of state.reservations) {
          if (r.expiresAt > now) break;
          out.push({ accountId, decisionId, amount: nanos(r.amount) });
        }
      }
      return out;
    },
    async refresh() {
      if (accounts.size === 0) return;
      const loaded = await options.source.balances([...accounts.keys()]);
      for (const [accountId, row] of loaded) {
        const state = accounts.get(accountId);
        if (state) apply(state, row.balance, row.version);
      }
    },
    async openReservations() {
      let open = 0;
      for (const state of accounts.values()) open += state.reservations.size;
      return open;
    },
    async close() {
      accounts.clear();
    },
  };
}
