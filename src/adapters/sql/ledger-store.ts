import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { spendField, spendPeriods, type SpendTotal } from "../../domain/budgets.js";
import { moveFree } from "../../domain/grants.js";
import { basisPoints, nanos, type Nanos } from "../../domain/money.js";
import type { CommitResult, DeadLetter, Ledger, LedgerKind, UsageEvent } from "../../domain/metering.js";
import { NotFoundError } from "./account-store.js";
import { writeFreeParts } from "./grant-store.js";
import { dropExpiredUsage, prepareUsagePartitions } from "./usage-partitions.js";
import { insertBudgetAlerts } from "./webhook-store.js";
import { big, bool, int, type Database } from "./database.js";

/** The ledger store's port is declared with the domain (src/domain/ports.ts); re-exported for its importers. */
export type { DailyUsage, LedgerStore, UsageQuery, UsageRow } from "../../domain/ports.js";
import type { LedgerStore, UsageQuery } from "../../domain/ports.js";

const CHUNK = 400;

/** What one group commit is given (the ledger port's commit argument). */
type CommitBatch = Parameters<Ledger["commit"]>[0];

const USAGE_COLUMNS = [
  "decision_id",
  "request_id",
  "time",
  "account_id",
  "key_id",
  "model",
  "provider",
  "status",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "reasoning_tokens",
  "cost",
  "estimated",
  "duration_ms",
];

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A ledger row a group commit means to insert. */
interface LedgerRow {
  accountId: string;
  kind: LedgerKind;
  amount: bigint;
  decisionId: string;
  estimated: boolean;
  /** How much of the balance's free part this row moves (−took for a debit, +given back for a refund). */
  freeDelta: bigint;
  /** An expired charge's share taken from the free part (its adjustment refunds the free part first up to it). */
  freeAmount?: bigint;
}

/** A ledger row that really went in. */
interface Inserted {
  accountId: string;
  kind: LedgerKind;
  amount: bigint;
  decisionId: string;
  freeDelta: bigint;
}

/** What a group commit's write did: the rows that went in and the balances after them. */
interface Written {
  inserted: Inserted[];
  balances: Map<string, { balance: Nanos; version: number }>;
  /** Each account's spend totals after the commit, of the periods it spent in. */
  spendTotals: Map<string, SpendTotal[]>;
}

/** A key's or account's spend in one commit, and the time whose budget periods it counts in. */
interface SpendAt {
  accountId: string;
  scopeId: string;
  amount: bigint;
  at: number;
}

/** A spend_totals row a commit adds to. */
interface SpendRow {
  scope_id: string;
  period: string;
  account_id: string;
  spent: bigint;
}

/**
 * What each key and account spent in a commit's inserted rows (an adjustment may give some back) counts against
 * budgets: in the periods in force now, except an adjustment of an expired charge, which corrects that charge where
 * it counted (a refund counted in the next period would widen that period's budget by as much).
 */
function scopeSpends(
  inserted: readonly Inserted[],
  expiredAt: (decisionId: string) => number | undefined,
  keyOf: ReadonlyMap<string, string>,
  now: number,
): SpendAt[] {
  const spends = new Map<string, SpendAt>();
  const spend = (accountId: string, scopeId: string, amount: bigint, at: number) => {
    const id = `${scopeId}\u0000${at}`;
    const s = spends.get(id) ?? { accountId, scopeId, amount: 0n, at };
    s.amount += amount;
    spends.set(id, s);
  };
  for (const row of inserted) {
    const at = (row.kind === "adjustment" && expiredAt(row.decisionId)) || now;
    spend(row.accountId, row.accountId, -row.amount, at);
    const keyId = keyOf.get(row.decisionId);
    if (keyId !== undefined) spend(row.accountId, keyId, -row.amount, at);
  }
  return [...spends.values()];
}

/**
 * The spend_totals rows the spends add to: every period containing each spend's `at` (in its account's time zone),
 * one row per scope and period (an upsert may not touch a row twice), sorted so concurrent commits lock them in one
 * order.
 */
function spendRows(spends: readonly SpendAt[], zones: ReadonlyMap<string, string | null>): SpendRow[] {
  const byRow = new Map<string, SpendRow>();
  for (const s of spends) {
    if (s.amount === 0n) continue;
    for (const period of spendPeriods(zones.get(s.accountId), s.at)) {
      const id = `${s.scopeId}\u0000${period}`;
      const row = byRow.get(id) ?? { scope_id: s.scopeId, period, account_id: s.accountId, spent: 0n };
      row.spent += s.amount;
      byRow.set(id, row);
    }
  }
  return [...byRow.values()]
    .filter((r) => r.spent !== 0n)
    .sort((a, b) => (a.scope_id + a.period < b.scope_id + b.period ? -1 : 1));
}

/** Spend totals as written back by the upsert, per account. */
function spendTotalsOf(rows: ReadonlyArray<Record<string, unknown>>): Map<string, SpendTotal[]> {
  const out = new Map<string, SpendTotal[]>();
  for (const row of rows) {
    const list = out.get(row.account_id as string) ?? [];
    list.push({ field: spendField(row.scope_id as string, row.period as string), spent: nanos(big(row.spent)) });
    out.set(row.account_id as string, list);
  }
  return out;
}

/** The daily rollup's counters, added to on conflict. */
const ROLLUP_COLUMNS = [
  "requests",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "reasoning_tokens",
  "cost",
  "estimated_requests",
];

/** A usage_log row of a billed event. */
function usageRow(e: UsageEvent): Record<string, unknown> {
  return {
    decision_id: e.decisionId,
    request_id: e.requestId,
    time: e.startMs,
    account_id: e.accountId,
    key_id: e.keyId,
    model: e.model,
    provider: e.provider,
    status: e.status,
    prompt_tokens: e.promptTokens,
    completion_tokens: e.completionTokens,
    cached_tokens: e.cachedTokens,
    reasoning_tokens: e.reasoningTokens,
    cost: e.cost,
    estimated: e.estimated,
    duration_ms: e.durationMs,
  };
}

/** A value of a PostgreSQL array parameter. */
type ArrayValue = string | number | bigint | boolean | null;

/**
 * A PostgreSQL array literal (`{"a","b"}`), passed as one text parameter and cast in SQL: node-postgres would
 * otherwise escape every element of a JS array through several calls, and knex walk it for undefined values.
 */
export function arrayLiteral(values: readonly ArrayValue[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === null) parts[i] = "NULL";
    else if (typeof v === "string")
      parts[i] = `"${v.includes("\\") || v.includes('"') ? v.replace(/[\\"]/g, "\\$&") : v}"`;
    else if (typeof v === "boolean") parts[i] = v ? "t" : "f";
    else parts[i] = String(v);
  }
  return `{${parts.join(",")}}`;
}

function jsonValue(v: ArrayValue): string {
  // SQLite decodes a JSON escape of a lone surrogate to the same bytes as binding that text: lookups and inserts agree.
  if (typeof v === "string") return JSON.stringify(v);
  return v === null ? "null" : String(v);
}

/**
 * A JSON array of rows (each an array of values), passed to SQLite as one text parameter and read with json_each:
 * a short statement that SQLite prepares in microseconds, where a multi-row VALUES list of thousands of parameters
 * took longer to prepare than to run. JSON integers are read back as exact 64-bit integers.
 */
export function jsonRows(rows: ReadonlyArray<readonly ArrayValue[]>): string {
  const out = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const parts = new Array<string>(row.length);
    for (let j = 0; j < row.length; j++) parts[j] = jsonValue(row[j]!);
    out[i] = `[${parts.join(",")}]`;
  }
  return `[${out.join(",")}]`;
}

/** A JSON array of values for SQLite's json_each (see jsonRows). */
export function jsonList(values: readonly ArrayValue[]): string {
  return `[${values.map(jsonValue).join(",")}]`;
}

/** `j.value ->> 0, j.value ->> 1, ...`: the columns of jsonRows rows read through json_each as j. */
function jsonColumns(n: number): string {
  return Array.from({ length: n }, (_, i) => `j.value ->> ${i}`).join(", ");
}

/** What a group commit reads while it takes the accounts' locks. */
interface LockedAccounts {
  /** PostgreSQL: balances before this commit (SQLite reads balances after its write instead). */
  before: Map<string, { balance: Nanos; version: number }>;
  /** Free parts of the accounts that have one. */
  free: Map<string, bigint>;
  /** Time zones (null: UTC), for the boundaries of the budget periods their spend counts in. */
  zones: Map<string, string | null>;
  /** Accounts with a live webhook: only their spend can write a budget alert. */
  watched: Set<string>;
}

interface Existing {
  debit: boolean;
  adjustment: boolean;
  /** The (negative) amount of an expired-reservation charge, when one was made. */
  expiredAmount?: bigint;
  /** When that charge was committed: its adjustment counts against the budgets of that charge's periods. */
  expiredAt?: number;
  /** How much of that charge came out of the balance's free part (0n for charges made before this was recorded). */
  expiredFree?: bigint;
}

/** Creates the SQL ledger store over an open database. */
export function createLedgerStore(db: Database): LedgerStore {
  const { knex } = db;
  const postgres = db.dialect === "postgres";

  /**
   * Creates missing balance rows and, on PostgreSQL, locks the accounts' rows in id order (no deadlocks). On
   * PostgreSQL one upsert does both: ON CONFLICT DO UPDATE locks each existing row as it meets it, in the order given.
   */
  async function lockAccounts(trx: Knex.Transaction, accountIds: string[], now: number): Promise<void> {
    if (postgres)
      await trx.raw(
        `insert into balances (account_id, balance, version, updated_at)
         select id, 0, 0, ? from unnest(?::text[]) as id order by id
         on conflict (account_id) do update set updated_at = balances.updated_at`,
        [now, arrayLiteral(accountIds)],
      );
    // SQLite has one writer anyway.
    else
      await trx.raw(
        `insert into balances (account_id, balance, version, updated_at)
         select value, 0, 0, ? from json_each(?) where true on conflict (account_id) do nothing`,
        [now, jsonList(accountIds)],
      );
  }

  /**
   * A group commit's first statement(s): the accounts' locks (lockAccounts), and with them what the commit needs to
   * know of each account, so that nothing else is read per account: on PostgreSQL its balance before this
   * transaction's changes; its free part, time zone, and whether a live webhook could want a budget alert.
   */
  async function lockForCommit(trx: Knex.Transaction, accountIds: string[], now: number): Promise<LockedAccounts> {
    const out: LockedAccounts = { before: new Map(), free: new Map(), zones: new Map(), watched: new Set() };
    const facts = `a.time_zone, exists (select 1 from webhooks w where w.account_id = b.account_id and w.deleted_at is null) as watched`;
    let rows: Array<Record<string, unknown>>;
    if (postgres) {
      // Every writer of an account's entries holds its row lock, so the reads after this statement see every
      // committed entry of these decisions and nothing can commit between our read and our write.
      const result = await trx.raw(
        `with b as (
           insert into balances (account_id, balance, version, updated_at)
           select id, 0, 0, ? from unnest(?::text[]) as id order by id
           on conflict (account_id) do update set updated_at = balances.updated_at
           returning account_id, balance, version, free_balance
         )
         select b.account_id, b.balance, b.version, b.free_balance, ${facts}
         from b left join accounts a on a.id = b.account_id`,
        [now, arrayLiteral(accountIds)],
      );
      rows = result.rows as Array<Record<string, unknown>>;
    } else {
      await lockAccounts(trx, accountIds, now);
      // The commit holds SQLite's write lock.
      rows = (await trx.raw(
        `select b.account_id, b.free_balance, ${facts}
         from balances b left join accounts a on a.id = b.account_id
         where b.account_id in (select value from json_each(?))`,
        [jsonList(accountIds)],
      )) as Array<Record<string, unknown>>;
    }
    for (const row of rows) {
      const id = row.account_id as string;
      if (postgres) out.before.set(id, { balance: nanos(big(row.balance)), version: int(row.version) });
      const free = big(row.free_balance);
      if (free > 0n) out.free.set(id, free);
      out.zones.set(id, (row.time_zone as string | null) ?? null);
      if (bool(row.watched)) out.watched.add(id);
    }
    return out;
  }

  async function applyDeltas(
    trx: Knex.Transaction,
    deltas: Map<string, bigint>,
    now: number,
  ): Promise<Map<string, { balance: Nanos; version: number }>> {
    const out = new Map<string, { balance: Nanos; version: number }>();
    if (deltas.size === 0) return out;
    if (postgres) {
      for (const part of chunks([...deltas])) {
        const values = part.map(() => "(?, ?::bigint)").join(", ");
        const result = await trx.raw(
          `update balances as b set balance = b.balance + v.delta, version = b.version + 1, updated_at = ?
           from (values ${values}) as v(account_id, delta) where b.account_id = v.account_id
           returning b.account_id, b.balance, b.version`,
          [now, ...part.flatMap(([id, delta]) => [id, delta.toString()])],
        );
        for (const row of result.rows as Array<Record<string, unknown>>) {
          out.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
        }
      }
    } else {
      const rows = (await trx.raw(
        `update balances set balance = balance + v.delta, version = version + 1, updated_at = ?
         from (select j.value ->> 0 as id, j.value ->> 1 as delta from json_each(?) as j) as v
         where balances.account_id = v.id
         returning account_id, balance, version`,
        [now, jsonRows([...deltas])],
      )) as Array<Record<string, unknown>>;
      for (const row of rows)
        out.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
    }
    return out;
  }

  /**
   * PostgreSQL's write of a group commit, in one statement: the ledger rows, their usage rows, the daily rollups and
   * the balances. Under the accounts' locks the rows planned are exactly the rows that can go in, so they are
   * inserted without ON CONFLICT (speculative insertion costs the database more per row); the unique
   * (decision_id, kind) key still has the last word: a planned row it refuses fails the whole statement, so nothing
   * of the batch is written and the batch is retried and planned again, never billed twice. Each column is one array
   * literal parameter, so the statement stays short whatever the batch size and binding it costs one string per
   * column.
   */
  async function writePostgres(
    trx: Knex.Transaction,
    ledgerRows: LedgerRow[],
    usage: Map<string, UsageEvent>,
    spends: readonly SpendRow[],
    now: number,
  ): Promise<Written> {
    const balances = new Map<string, { balance: Nanos; version: number }>();
    if (ledgerRows.length === 0) return { inserted: [], balances, spendTotals: new Map() };
    const usageRows = ledgerRows
      .filter((r) => r.kind !== "expired_reservation_charge")
      .map((r) => usageRow(usage.get(r.decisionId)!));
    const daily = rollupRows(usageRows);
    const deltas = new Map<string, bigint>();
    for (const r of ledgerRows) deltas.set(r.accountId, (deltas.get(r.accountId) ?? 0n) + r.amount);
    const column = (rows: ReadonlyArray<Record<string, unknown>>, name: string) =>
      arrayLiteral(rows.map((r) => r[name] as ArrayValue));
    const result = await trx.raw(
      `with ins as (
         insert into ledger_entries (account_id, kind, amount, decision_id, estimated, free_amount, created_at)
         select account_id, kind, amount, decision_id, estimated, free_amount, ?
         from unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::boolean[], ?::bigint[])
           as t(account_id, kind, amount, decision_id, estimated, free_amount)
       ),
       logged as (
         insert into usage_log (${USAGE_COLUMNS.join(", ")})
         select * from unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int[],
           ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::boolean[], ?::bigint[])
       ),
       daily as (
         insert into usage_daily (account_id, day, key_id, model, ${ROLLUP_COLUMNS.join(", ")})
         select * from unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[],
           ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[])
         on conflict (account_id, day, key_id, model) do update set ${ROLLUP_COLUMNS.map(
           (c) => `${c} = usage_daily.${c} + excluded.${c}`,
         ).join(", ")}
       ),
       moved as (
         update balances as b set balance = b.balance + v.delta, version = b.version + 1, updated_at = ?
         from unnest(?::text[], ?::bigint[]) as v(account_id, delta)
         where b.account_id = v.account_id
         returning b.account_id, b.balance, b.version
       ),
       spent as (
         insert into spend_totals (scope_id, period, account_id, spent)
         select * from unnest(?::text[], ?::text[], ?::text[], ?::bigint[])
         on conflict (scope_id, period) do update set spent = spend_totals.spent + excluded.spent
         returning account_id, scope_id, period, spent
       )
       select account_id, balance, version, null::text as scope_id, null::text as period from moved
       union all
       select account_id, spent, null, scope_id, period from spent`,
      [
        now,
        arrayLiteral(ledgerRows.map((r) => r.accountId)),
        arrayLiteral(ledgerRows.map((r) => r.kind)),
        arrayLiteral(ledgerRows.map((r) => r.amount)),
        arrayLiteral(ledgerRows.map((r) => r.decisionId)),
        arrayLiteral(ledgerRows.map((r) => r.estimated)),
        arrayLiteral(ledgerRows.map((r) => r.freeAmount ?? null)),
        ...USAGE_COLUMNS.map((c) => column(usageRows, c)),
        ...["account_id", "day", "key_id", "model", ...ROLLUP_COLUMNS].map((c) => column(daily, c)),
        now,
        arrayLiteral([...deltas.keys()]),
        arrayLiteral([...deltas.values()]),
        ...(["scope_id", "period", "account_id", "spent"] as const).map((c) => arrayLiteral(spends.map((r) => r[c]))),
      ],
    );
    const spent: Array<Record<string, unknown>> = [];
    for (const row of result.rows as Array<Record<string, unknown>>) {
      if (row.scope_id !== null) spent.push({ ...row, spent: row.balance });
      else balances.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
    }
    return { inserted: ledgerRows, balances, spendTotals: spendTotalsOf(spent) };
  }

  /** SQLite's write of a group commit: the same steps, statement by statement (one writer, no round trips). */
  async function writeSqlite(
    trx: Knex.Transaction,
    ledgerRows: LedgerRow[],
    usage: Map<string, UsageEvent>,
    accountIds: string[],
    spendsOf: (inserted: readonly Inserted[]) => SpendRow[],
    now: number,
  ): Promise<Written> {
    const inserted: Inserted[] = [];
    if (ledgerRows.length > 0) {
      // The unique (decision_id, kind) constraint is the last word on exactly-once: only rows that really went in
      // come back, and only those move balances.
      const back = (await trx.raw(
        `insert into ledger_entries (account_id, kind, amount, decision_id, estimated, free_amount, created_at)
         select ${jsonColumns(6)}, ? from json_each(?) as j where true
         on conflict (decision_id, kind) do nothing
         returning account_id, amount, decision_id, kind`,
        [
          now,
          jsonRows(
            ledgerRows.map((r) => [r.accountId, r.kind, r.amount, r.decisionId, r.estimated, r.freeAmount ?? null]),
          ),
        ],
      )) as Array<Record<string, unknown>>;
      const planned = new Map(ledgerRows.map((r) => [`${r.decisionId}\u0000${r.kind}`, r]));
      for (const row of back)
        inserted.push({
          accountId: row.account_id as string,
          amount: big(row.amount),
          decisionId: row.decision_id as string,
          kind: row.kind as LedgerKind,
          freeDelta: planned.get(`${row.decision_id as string}\u0000${row.kind as string}`)?.freeDelta ?? 0n,
        });
    }
    const deltas = new Map<string, bigint>();
    const usageRows: Array<Record<string, unknown>> = [];
    for (const row of inserted) {
      deltas.set(row.accountId, (deltas.get(row.accountId) ?? 0n) + row.amount);
      if (row.kind === "expired_reservation_charge") continue;
      usageRows.push(usageRow(usage.get(row.decisionId)!));
    }
    if (usageRows.length > 0)
      await trx.raw(
        `insert into usage_log (${USAGE_COLUMNS.join(", ")})
         select ${jsonColumns(USAGE_COLUMNS.length)} from json_each(?) as j where true
         on conflict (decision_id) do nothing`,
        [jsonRows(usageRows.map((r) => USAGE_COLUMNS.map((c) => r[c] as ArrayValue)))],
      );
    await rollUp(trx, usageRows);
    const balances = await applyDeltas(trx, deltas, now);
    const unchanged = accountIds.filter((id) => !balances.has(id));
    if (unchanged.length > 0) {
      const rows = (await trx.raw(
        "select account_id, balance, version from balances where account_id in (select value from json_each(?))",
        [jsonList(unchanged)],
      )) as Array<Record<string, unknown>>;
      for (const row of rows)
        balances.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
    }
    return { inserted, balances, spendTotals: await addSpendTotals(trx, spendsOf(inserted)) };
  }

  /** One group commit in one transaction: the accounts' rows locked first, then their entries read and written. */
  async function commitOne({ events, expired, deadLetters, now }: CommitBatch): Promise<CommitResult> {
    const result: CommitResult = {
      billed: 0,
      alreadyBilled: 0,
      expired: 0,
      deadLettered: 0,
      billedDecisions: [],
      changes: [],
    };
    const accountIds = [...new Set([...events.map((e) => e.accountId), ...expired.map((e) => e.accountId)])].sort();
    await knex.transaction(async (trx) => {
      if (deadLetters.length > 0) {
        for (const part of chunks(deadLetters)) {
          await trx("dead_letters").insert(
            part.map((d: DeadLetter) => ({
              source: d.source,
              reason: d.reason,
              payload: d.payload,
              received_at: now,
            })),
          );
        }
        result.deadLettered = deadLetters.length;
      }
      if (accountIds.length === 0) return;
      const locked = await lockForCommit(trx, accountIds, now);
      const { before, free: freeBefore } = locked;
      /** Each account's free part as this commit's planned rows move it, in order. */
      const free = new Map(freeBefore);
      const moveFreeBy = (accountId: string, amount: bigint, refundable: bigint) => {
        const moved = moveFree(free.get(accountId) ?? 0n, amount, refundable);
        const delta = moved.free - (free.get(accountId) ?? 0n);
        free.set(accountId, moved.free);
        return { delta, took: moved.took };
      };

      const decisionIds = [...new Set([...events.map((e) => e.decisionId), ...expired.map((e) => e.decisionId)])];
      const existing = new Map<string, Existing>();
      const stateOf = (id: string) => {
        let s = existing.get(id);
        if (!s) existing.set(id, (s = { debit: false, adjustment: false }));
        return s;
      };
      const rows = await trx("ledger_entries")
        .whereRaw(postgres ? "decision_id = any(?::text[])" : "decision_id in (select value from json_each(?))", [
          postgres ? arrayLiteral(decisionIds) : jsonList(decisionIds),
        ])
        .whereIn("kind", ["usage_debit", "adjustment", "expired_reservation_charge"])
        .select("decision_id", "kind", "amount", "created_at", "free_amount");
      for (const row of rows) {
        const s = stateOf(row.decision_id as string);
        if (row.kind === "usage_debit") s.debit = true;
        else if (row.kind === "adjustment") s.adjustment = true;
        else {
          s.expiredAmount = big(row.amount);
          s.expiredAt = int(row.created_at);
          s.expiredFree = row.free_amount === null || row.free_amount === undefined ? 0n : big(row.free_amount);
        }
      }

      const ledgerRows: LedgerRow[] = [];
      const usageByDecision = new Map<string, UsageEvent>();
      /** Which key each decision was admitted for, so its cost counts against the key's budget. */
      const keyOf = new Map<string, string>();
      for (const e of events) keyOf.set(e.decisionId, e.keyId);
      for (const r of expired) if (r.keyId !== undefined && !keyOf.has(r.decisionId)) keyOf.set(r.decisionId, r.keyId);
      const settled = new Map<string, string[]>();
      const settle = (accountId: string, decisionId: string) => {
        const list = settled.get(accountId) ?? [];
        list.push(decisionId);
        settled.set(accountId, list);
      };
      for (const event of events) {
        const s = stateOf(event.decisionId);
        settle(event.accountId, event.decisionId);
        if (s.debit || s.adjustment) {
          result.alreadyBilled++;
          continue;
        }
        if (s.expiredAmount !== undefined) {
          // The reservation expired into a worst-case charge; the real settlement corrects it so the decision's
          // entries sum to exactly −cost. What it gives back goes to the free part first, up to what the charge took.
          const amount = -event.cost - s.expiredAmount;
          ledgerRows.push({
            accountId: event.accountId,
            kind: "adjustment",
            amount,
            decisionId: event.decisionId,
            estimated: event.estimated,
            freeDelta: moveFreeBy(event.accountId, amount, s.expiredFree ?? 0n).delta,
          });
          s.adjustment = true;
        } else {
          ledgerRows.push({
            accountId: event.accountId,
            kind: "usage_debit",
            amount: -event.cost,
            decisionId: event.decisionId,
            estimated: event.estimated,
            freeDelta: moveFreeBy(event.accountId, -event.cost, 0n).delta,
          });
          s.debit = true;
        }
        usageByDecision.set(event.decisionId, event);
      }
      for (const reservation of expired) {
        const s = stateOf(reservation.decisionId);
        settle(reservation.accountId, reservation.decisionId);
        if (s.debit || s.adjustment || s.expiredAmount !== undefined) continue;
        const moved = moveFreeBy(reservation.accountId, -reservation.amount, 0n);
        ledgerRows.push({
          accountId: reservation.accountId,
          kind: "expired_reservation_charge",
          amount: -reservation.amount,
          decisionId: reservation.decisionId,
          estimated: true,
          freeDelta: moved.delta,
          freeAmount: moved.took,
        });
        s.expiredAmount = -reservation.amount;
      }

      const spendsOf = (rows: readonly Inserted[]) =>
        spendRows(
          scopeSpends(rows, (id) => existing.get(id)?.expiredAt, keyOf, now),
          locked.zones,
        );
      // On PostgreSQL the rows planned are the rows inserted (or the statement fails): its spend goes in the same
      // statement. SQLite learns which rows went in first.
      const { inserted, balances, spendTotals } = postgres
        ? await writePostgres(trx, ledgerRows, usageByDecision, spendsOf(ledgerRows), now)
        : await writeSqlite(trx, ledgerRows, usageByDecision, accountIds, spendsOf, now);
      const deltas = new Map<string, bigint>();
      const freeDeltas = new Map<string, bigint>();
      for (const row of inserted) {
        deltas.set(row.accountId, (deltas.get(row.accountId) ?? 0n) + row.amount);
        freeDeltas.set(row.accountId, (freeDeltas.get(row.accountId) ?? 0n) + row.freeDelta);
        if (row.kind === "expired_reservation_charge") {
          result.expired++;
          continue;
        }
        result.billed++;
        result.billedDecisions.push(row.decisionId);
      }
      // Events that lost the insert race (only possible without the lock's guarantee) count as already billed.
      result.alreadyBilled += ledgerRows.length - inserted.length;
      // budget.threshold / budget.exhausted, in this transaction (so an alert is written once the spend is); only an
      // account with a live webhook can have one written.
      const alerting = scopeSpends(inserted, (id) => existing.get(id)?.expiredAt, keyOf, now).filter(
        (s) => s.at === now && locked.watched.has(s.accountId),
      );
      if (alerting.length > 0) await insertBudgetAlerts(trx, alerting, spendTotals, now);
      // Plan grants (the balance's free part) are spent before paid credit, and refunded first to where they came from.
      await writeFreeParts(trx, freeBefore, freeDeltas, balances);
      // Accounts whose entries were all settled before still report their balance, so a cache that missed the
      // earlier update (a crash between commit and cache update) catches up here.
      for (const [accountId, b] of before) if (!balances.has(accountId)) balances.set(accountId, b);
      for (const accountId of accountIds) {
        const after = balances.get(accountId);
        result.changes.push({
          accountId,
          delta: deltas.get(accountId) ?? 0n,
          balance: after?.balance ?? nanos(0n),
          version: after?.version ?? -1,
          settled: settled.get(accountId) ?? [],
          spend: spendTotals.get(accountId),
        });
      }
    });
    return result;
  }

  const store: LedgerStore = {
    commit: commitOne,

    async topUp({ accountId, amount, feeBps, now }) {
      if (amount <= 0n) throw new RangeError("a top-up must be a positive amount");
      const account = await knex("accounts").where({ id: accountId }).first("id");
      if (!account) throw new NotFoundError(`account "${accountId}" does not exist`);
      const fee = basisPoints(amount, feeBps);
      const topUpId = `topup_${randomUUID()}`;
      const change = await knex.transaction(async (trx) => {
        await lockAccounts(trx, [accountId], now);
        await trx("ledger_entries").insert([
          { account_id: accountId, kind: "top_up", amount, decision_id: topUpId, estimated: false, created_at: now },
          {
            account_id: accountId,
            kind: "platform_fee",
            amount: fee,
            decision_id: topUpId,
            estimated: false,
            created_at: now,
          },
        ]);
        const after = (await applyDeltas(trx, new Map([[accountId, amount as bigint]]), now)).get(accountId)!;
        return { accountId, delta: amount as bigint, balance: after.balance, version: after.version, settled: [] };
      });
      return { topUpId, fee, change };
    },

    async balance(accountId) {
      const row = await knex("balances").where({ account_id: accountId }).first();
      return row ? { balance: nanos(big(row.balance)), version: int(row.version) } : { balance: nanos(0n), version: 0 };
    },

    async balances(accountIds, spendAt) {
      const out = new Map<string, { balance: Nanos; version: number; spend?: SpendTotal[] }>();
      for (const id of accountIds) out.set(id, { balance: nanos(0n), version: 0 });
      const read = async (q: Knex | Knex.Transaction) => {
        for (const part of chunks(accountIds)) {
          for (const row of await q("balances").whereIn("account_id", part).select()) {
            out.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
          }
          if (spendAt !== undefined) {
            for (const [accountId, totals] of await readSpendTotals(q, part, spendAt))
              out.get(accountId)!.spend = totals;
          }
        }
      };
      if (spendAt === undefined) await read(knex);
      // Balances and spend totals from one snapshot, so the totals are exactly those of the version read.
      else await knex.transaction(read, postgres ? { isolationLevel: "repeatable read", readOnly: true } : undefined);
      return out;
    },

    async entriesTotal(accountId) {
      const row = await knex("ledger_entries")
        .where({ account_id: accountId })
        .whereNot({ kind: "platform_fee" })
        .sum({ total: "amount" })
        .first();
      return nanos(row?.total === null || row?.total === undefined ? 0n : big(row.total));
    },

    async entries(accountId) {
      const rows = await knex("ledger_entries").where({ account_id: accountId }).orderBy("id");
      return rows.map((r) => ({
        kind: r.kind as LedgerKind,
        amount: big(r.amount),
        decisionId: r.decision_id as string,
        estimated: bool(r.estimated),
      }));
    },

    async usage(query) {
      const rows = await filtered(knex("usage_log"), query, "time")
        .orderBy("time", "desc")
        .limit(query.limit ?? 1000);
      return rows.map((r: Record<string, unknown>) => ({
        time: int(r.time),
        decisionId: r.decision_id as string,
        requestId: r.request_id as string,
        accountId: r.account_id as string,
        keyId: r.key_id as string,
        model: r.model as string,
        provider: r.provider as string,
        status: int(r.status),
        promptTokens: int(r.prompt_tokens),
        completionTokens: int(r.completion_tokens),
        cachedTokens: int(r.cached_tokens),
        reasoningTokens: int(r.reasoning_tokens),
        cost: nanos(big(r.cost)),
        estimated: bool(r.estimated),
        durationMs: int(r.duration_ms),
      }));
    },

    async daily(query) {
      let q = knex("usage_daily").where({ account_id: query.accountId });
      if (query.keyId) q = q.andWhere({ key_id: query.keyId });
      if (query.model) q = q.andWhere({ model: query.model });
      if (query.since !== undefined) q = q.andWhere("day", ">=", utcDay(query.since));
      if (query.until !== undefined) q = q.andWhere("day", "<=", utcDay(query.until - 1));
      const rows = await q.orderBy(["day", "key_id", "model"]);
      return rows.map((r: Record<string, unknown>) => ({
        day: r.day as string,
        keyId: r.key_id as string,
        model: r.model as string,
        requests: int(r.requests),
        promptTokens: int(r.prompt_tokens),
        completionTokens: int(r.completion_tokens),
        cachedTokens: int(r.cached_tokens),
        reasoningTokens: int(r.reasoning_tokens),
        cost: nanos(big(r.cost)),
        estimatedRequests: int(r.estimated_requests),
      }));
    },

    async deadLetters() {
      return (await knex("dead_letters").orderBy("id")).map((r) => ({
        source: r.source as string,
        reason: r.reason as string,
        payload: r.payload as string,
      }));
    },

    async prune(before) {
      if (postgres) {
        // Whole days go at once (rows are kept up to a day past `before`); the days ahead are made ready here too,
        // so a meter never writes into the default partition while this runs every hour.
        const { deleted, droppedRows } = await dropExpiredUsage(knex, before);
        await prepareUsagePartitions(knex, Date.now());
        const deadLetters = await knex("dead_letters").where("received_at", "<", before).delete();
        return { usage: deleted + droppedRows, deadLetters: int(deadLetters) };
      }
      const usage = await knex("usage_log").where("time", "<", before).delete();
      const deadLetters = await knex("dead_letters").where("received_at", "<", before).delete();
      return { usage: int(usage), deadLetters: int(deadLetters) };
    },
  };
  return store;

  function filtered(q: Knex.QueryBuilder, query: UsageQuery, timeColumn: string): Knex.QueryBuilder {
    q = q.where({ account_id: query.accountId });
    if (query.keyId) q = q.andWhere({ key_id: query.keyId });
    if (query.model) q = q.andWhere({ model: query.model });
    if (query.since !== undefined) q = q.andWhere(timeColumn, ">=", query.since);
    if (query.until !== undefined) q = q.andWhere(timeColumn, "<", query.until);
    return q;
  }

  /** The accounts' time zones (null: UTC), for the boundaries of their budget periods. */
  async function timeZones(
    q: Knex | Knex.Transaction,
    accountIds: readonly string[],
  ): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    for (const row of await q("accounts").whereIn("id", accountIds).select("id", "time_zone"))
      out.set(row.id as string, (row.time_zone as string | null) ?? null);
    return out;
  }

  /** Every spend total of these accounts (their keys' and their own) in the periods containing `now`. */
  async function readSpendTotals(
    q: Knex | Knex.Transaction,
    accountIds: readonly string[],
    now: number,
  ): Promise<Map<string, SpendTotal[]>> {
    const out = new Map<string, SpendTotal[]>();
    if (accountIds.length === 0) return out;
    const zones = await timeZones(q, accountIds);
    const periods = new Set<string>();
    for (const id of accountIds) for (const p of spendPeriods(zones.get(id), now)) periods.add(p);
    const rows = await q("spend_totals")
      .whereIn("account_id", accountIds)
      .whereIn("period", [...periods])
      .select("account_id", "scope_id", "period", "spent");
    for (const row of rows) {
      const accountId = row.account_id as string;
      // Another zone's period of the same name (a day id that is yesterday here) is not this account's.
      if (!spendPeriods(zones.get(accountId), now).includes(row.period as string)) continue;
      const list = out.get(accountId) ?? [];
      list.push({ field: spendField(row.scope_id as string, row.period as string), spent: nanos(big(row.spent)) });
      out.set(accountId, list);
    }
    return out;
  }

  /** SQLite: adds the rows to their spend totals and returns the totals as they stand after it, per account. */
  async function addSpendTotals(trx: Knex.Transaction, rows: readonly SpendRow[]): Promise<Map<string, SpendTotal[]>> {
    if (rows.length === 0) return new Map();
    const back = (await trx.raw(
      `insert into spend_totals (scope_id, period, account_id, spent)
       select ${jsonColumns(4)} from json_each(?) as j where true
       on conflict (scope_id, period) do update set spent = spend_totals.spent + excluded.spent
       returning account_id, scope_id, period, spent`,
      [jsonRows(rows.map((r) => [r.scope_id, r.period, r.account_id, r.spent]))],
    )) as Array<Record<string, unknown>>;
    return spendTotalsOf(back);
  }

  /** SQLite: adds the usage rows to their daily rollups (PostgreSQL does it in writePostgres's statement). */
  async function rollUp(trx: Knex.Transaction, usageRows: Array<Record<string, unknown>>): Promise<void> {
    if (usageRows.length === 0) return;
    const columns = ["account_id", "day", "key_id", "model", ...ROLLUP_COLUMNS];
    await trx.raw(
      `insert into usage_daily (${columns.join(", ")})
       select ${jsonColumns(columns.length)} from json_each(?) as j where true
       on conflict (account_id, day, key_id, model) do update set ${ROLLUP_COLUMNS.map(
         (c) => `${c} = usage_daily.${c} + excluded.${c}`,
       ).join(", ")}`,
      [jsonRows(rollupRows(usageRows).map((r) => columns.map((c) => r[c] as ArrayValue)))],
    );
  }
}

/** The daily rollup rows of some usage rows, one per account, day, key and model, sorted by that key. */
function rollupRows(usageRows: ReadonlyArray<Record<string, unknown>>): Array<Record<string, unknown>> {
  const groups = new Map<string, Record<string, unknown>>();
  for (const r of usageRows) {
    const day = utcDay(r.time as number);
    const id = `${r.account_id}\u0000${day}\u0000${r.key_id}\u0000${r.model}`;
    let g = groups.get(id);
    if (!g) {
      g = {
        account_id: r.account_id,
        day,
        key_id: r.key_id,
        model: r.model,
        requests: 0n,
        prompt_tokens: 0n,
        completion_tokens: 0n,
        cached_tokens: 0n,
        reasoning_tokens: 0n,
        cost: 0n,
        estimated_requests: 0n,
      };
      groups.set(id, g);
    }
    g.requests = (g.requests as bigint) + 1n;
    g.prompt_tokens = (g.prompt_tokens as bigint) + BigInt(r.prompt_tokens as number);
    g.completion_tokens = (g.completion_tokens as bigint) + BigInt(r.completion_tokens as number);
    g.cached_tokens = (g.cached_tokens as bigint) + BigInt(r.cached_tokens as number);
    g.reasoning_tokens = (g.reasoning_tokens as bigint) + BigInt(r.reasoning_tokens as number);
    g.cost = (g.cost as bigint) + (r.cost as bigint);
    g.estimated_requests = (g.estimated_requests as bigint) + (r.estimated ? 1n : 0n);
  }
  // Sorted so concurrent group commits touch rollup rows in the same order.
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}
