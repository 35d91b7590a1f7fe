import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { basisPoints, nanos, type Nanos } from "../../domain/money.js";
import type {
  BalanceChange,
  BalanceSource,
  CommitResult,
  DeadLetter,
  Ledger,
  LedgerKind,
  UsageEvent,
} from "../../domain/metering.js";
import { NotFoundError } from "./account-store.js";
import { big, bool, int, type Database } from "./database.js";

/** One request in the usage log, as queries return it: the billed event's own fields, `time` being its start. */
export type UsageRow = { time: number } & Pick<
  UsageEvent,
  | "decisionId" | "requestId" | "accountId" | "keyId" | "model" | "provider" | "status" | "promptTokens"
  | "completionTokens" | "cachedTokens" | "reasoningTokens" | "cost" | "estimated" | "durationMs"
>;

/** One account, key, model and UTC day of usage. */
export interface DailyUsage {
  day: string;
  keyId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
  cost: Nanos;
  estimatedRequests: number;
}

/** Filters for usage queries; times are inclusive-exclusive milliseconds. */
export interface UsageQuery {
  accountId: string;
  keyId?: string;
  model?: string;
  since?: number;
  until?: number;
  limit?: number;
}

/** The SQL ledger: exactly-once settlement, top-ups, balances and usage queries. */
export interface LedgerStore extends Ledger, BalanceSource {
  /** Adds credit C: records C and the platform fee on C, grows the balance by C; one transaction. */
  topUp(input: { accountId: string; amount: Nanos; feeBps: number; now: number }): Promise<{ topUpId: string; fee: Nanos; change: BalanceChange }>;
  balance(accountId: string): Promise<{ balance: Nanos; version: number }>;
  /** Sum of every balance-moving entry of an account (the invariant: equals its balance). */
  entriesTotal(accountId: string): Promise<Nanos>;
  entries(accountId: string): Promise<Array<{ kind: LedgerKind; amount: bigint; decisionId: string; estimated: boolean }>>;
  usage(query: UsageQuery): Promise<UsageRow[]>;
  daily(query: UsageQuery): Promise<DailyUsage[]>;
  deadLetters(): Promise<Array<{ source: string; reason: string; payload: string }>>;
  /** Deletes usage_log rows and dead letters older than `before` (the ledger and daily rollups are kept). */
  prune(before: number): Promise<{ usage: number; deadLetters: number }>;
}

const CHUNK = 400;

const USAGE_COLUMNS = [
  "decision_id", "request_id", "time", "account_id", "key_id", "model", "provider", "status", "prompt_tokens",
  "completion_tokens", "cached_tokens", "reasoning_tokens", "cost", "estimated", "duration_ms",
];

/** Rows as one array per column (bigints as decimal strings), for PostgreSQL `unnest` inserts. */
function columns(rows: ReadonlyArray<Record<string, unknown>>, names: readonly string[]): Knex.RawBinding[] {
  return names.map((name) => rows.map((r) => (typeof r[name] === "bigint" ? (r[name] as bigint).toString() : r[name]))) as Knex.RawBinding[];
}

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

interface Existing {
  debit: boolean;
  adjustment: boolean;
  /** The (negative) amount of an expired-reservation charge, when one was made. */
  expiredAmount?: bigint;
}

/** Test-only hooks for failure drills; never set in production. */
export interface LedgerTestHooks {
  /** Sleeps this long inside every settlement transaction, after its writes and before COMMIT (a kill lands mid-commit). */
  pauseInCommitMs?: number;
}

/** Creates the SQL ledger store over an open database. */
export function createLedgerStore(db: Database, testHooks: LedgerTestHooks = {}): LedgerStore {
  const { knex } = db;
  const postgres = db.dialect === "postgres";

  /** Creates missing balance rows and, on PostgreSQL, locks the accounts' rows in id order (no deadlocks). */
  async function lockAccounts(trx: Knex.Transaction, accountIds: string[], now: number): Promise<void> {
    for (const part of chunks(accountIds)) {
      await trx("balances")
        .insert(part.map((account_id) => ({ account_id, balance: 0, version: 0, updated_at: now })))
        .onConflict("account_id")
        .ignore();
    }
    // Every writer of an account's entries holds its row lock, so the reads below see every committed entry of
    // these decisions and nothing can commit between our read and our write. SQLite has one writer anyway.
    if (postgres) await trx.raw("select account_id from balances where account_id = any(?) order by account_id for update", [accountIds]);
  }

  async function applyDeltas(trx: Knex.Transaction, deltas: Map<string, bigint>, now: number): Promise<Map<string, { balance: Nanos; version: number }>> {
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
      for (const [id, delta] of deltas) {
        const rows = (await trx("balances")
          .where({ account_id: id })
          .update({ balance: trx.raw("balance + ?", [delta.toString()]), version: trx.raw("version + 1"), updated_at: now })
          .returning(["balance", "version"])) as Array<Record<string, unknown>>;
        out.set(id, { balance: nanos(big(rows[0]!.balance)), version: int(rows[0]!.version) });
      }
    }
    return out;
  }

  async function insertLedger(trx: Knex.Transaction, rows: Array<Record<string, unknown>>): Promise<Array<Record<string, unknown>>> {
    const inserted: Array<Record<string, unknown>> = [];
    if (rows.length === 0) return inserted;
    if (postgres) {
      // One array parameter per column: a short statement whatever the batch size (knex's multi-row VALUES costs
      // more to build and parse than to run).
      const result = await trx.raw(
        `insert into ledger_entries (account_id, kind, amount, decision_id, estimated, created_at)
         select * from unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::boolean[], ?::bigint[])
         on conflict (decision_id, kind) do nothing returning account_id, amount, decision_id, kind`,
        columns(rows, ["account_id", "kind", "amount", "decision_id", "estimated", "created_at"]),
      );
      return result.rows as Array<Record<string, unknown>>;
    }
    for (const part of chunks(rows)) {
      // The unique (decision_id, kind) constraint is the last word on exactly-once: only rows that really went in
      // come back, and only those move balances.
      const back = (await trx("ledger_entries")
        .insert(part)
        .onConflict(["decision_id", "kind"])
        .ignore()
        .returning(["account_id", "amount", "decision_id", "kind"])) as Array<Record<string, unknown>>;
      inserted.push(...back);
    }
    return inserted;
  }

  const store: LedgerStore = {
    async commit({ events, expired, deadLetters, now }) {
      const result: CommitResult = { billed: 0, alreadyBilled: 0, expired: 0, deadLettered: 0, billedDecisions: [], changes: [] };
      const accountIds = [...new Set([...events.map((e) => e.accountId), ...expired.map((e) => e.accountId)])].sort();
      await knex.transaction(async (trx) => {
        if (deadLetters.length > 0) {
          for (const part of chunks(deadLetters)) {
            await trx("dead_letters").insert(part.map((d: DeadLetter) => ({ source: d.source, reason: d.reason, payload: d.payload, received_at: now })));
          }
          result.deadLettered = deadLetters.length;
        }
        if (accountIds.length === 0) return;
        await lockAccounts(trx, accountIds, now);

        const decisionIds = [...new Set([...events.map((e) => e.decisionId), ...expired.map((e) => e.decisionId)])];
        const existing = new Map<string, Existing>();
        const stateOf = (id: string) => {
          let s = existing.get(id);
          if (!s) existing.set(id, (s = { debit: false, adjustment: false }));
          return s;
        };
        for (const part of postgres ? [decisionIds] : chunks(decisionIds)) {
          const rows = await (postgres ? trx("ledger_entries").whereRaw("decision_id = any(?)", [part]) : trx("ledger_entries").whereIn("decision_id", part))
            .whereIn("kind", ["usage_debit", "adjustment", "expired_reservation_charge"])
            .select("decision_id", "kind", "amount");
          for (const row of rows) {
            const s = stateOf(row.decision_id as string);
            if (row.kind === "usage_debit") s.debit = true;
            else if (row.kind === "adjustment") s.adjustment = true;
            else s.expiredAmount = big(row.amount);
          }
        }

        const ledgerRows: Array<Record<string, unknown>> = [];
        const usageByDecision = new Map<string, UsageEvent>();
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
            // entries sum to exactly −cost.
            ledgerRows.push({ account_id: event.accountId, kind: "adjustment", amount: -event.cost - s.expiredAmount, decision_id: event.decisionId, estimated: event.estimated, created_at: now });
            s.adjustment = true;
          } else {
            ledgerRows.push({ account_id: event.accountId, kind: "usage_debit", amount: -event.cost, decision_id: event.decisionId, estimated: event.estimated, created_at: now });
            s.debit = true;
          }
          usageByDecision.set(event.decisionId, event);
        }
        for (const reservation of expired) {
          const s = stateOf(reservation.decisionId);
          settle(reservation.accountId, reservation.decisionId);
          if (s.debit || s.adjustment || s.expiredAmount !== undefined) continue;
          ledgerRows.push({ account_id: reservation.accountId, kind: "expired_reservation_charge", amount: -reservation.amount, decision_id: reservation.decisionId, estimated: true, created_at: now });
          s.expiredAmount = -reservation.amount;
        }

        const inserted = await insertLedger(trx, ledgerRows);
        const deltas = new Map<string, bigint>();
        const usageRows: Array<Record<string, unknown>> = [];
        for (const row of inserted) {
          const accountId = row.account_id as string;
          deltas.set(accountId, (deltas.get(accountId) ?? 0n) + big(row.amount));
          if (row.kind === "expired_reservation_charge") {
            result.expired++;
            continue;
          }
          result.billed++;
          result.billedDecisions.push(row.decision_id as string);
          const e = usageByDecision.get(row.decision_id as string)!;
          usageRows.push({
            decision_id: e.decisionId, request_id: e.requestId, time: e.startMs, account_id: e.accountId, key_id: e.keyId,
            model: e.model, provider: e.provider, status: e.status, prompt_tokens: e.promptTokens,
            completion_tokens: e.completionTokens, cached_tokens: e.cachedTokens, reasoning_tokens: e.reasoningTokens,
            cost: e.cost, estimated: e.estimated, duration_ms: e.durationMs,
          });
        }
        // Events that lost the insert race (only possible without the lock's guarantee) count as already billed.
        result.alreadyBilled += ledgerRows.length - inserted.length;
        if (postgres && usageRows.length > 0) {
          await trx.raw(
            `insert into usage_log (${USAGE_COLUMNS.join(", ")})
             select * from unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::int[],
               ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::boolean[], ?::bigint[])
             on conflict (decision_id) do nothing`,
            columns(usageRows, USAGE_COLUMNS),
          );
        } else {
          for (const part of chunks(usageRows)) await trx("usage_log").insert(part).onConflict("decision_id").ignore();
        }
        await rollUp(trx, usageRows);

        const balances = await applyDeltas(trx, deltas, now);
        // Accounts whose entries were all settled before still report their balance, so a cache that missed the
        // earlier update (a crash between commit and cache update) catches up here.
        const unchanged = accountIds.filter((id) => !balances.has(id));
        for (const part of chunks(unchanged)) {
          for (const row of await trx("balances").whereIn("account_id", part).select()) {
            balances.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
          }
        }
        for (const accountId of accountIds) {
          const after = balances.get(accountId);
          result.changes.push({
            accountId,
            delta: deltas.get(accountId) ?? 0n,
            balance: after?.balance ?? nanos(0n),
            version: after?.version ?? -1,
            settled: settled.get(accountId) ?? [],
          });
        }
        if (testHooks.pauseInCommitMs) {
          // The drill waits for this line, then SIGKILLs the process while the transaction is still open.
          process.stderr.write(`tollgate test hook: paused ${testHooks.pauseInCommitMs} ms inside a ledger commit\n`);
          await new Promise((resolve) => setTimeout(resolve, testHooks.pauseInCommitMs));
        }
      });
      return result;
    },

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
          { account_id: accountId, kind: "platform_fee", amount: fee, decision_id: topUpId, estimated: false, created_at: now },
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

    async balances(accountIds) {
      const out = new Map<string, { balance: Nanos; version: number }>();
      for (const id of accountIds) out.set(id, { balance: nanos(0n), version: 0 });
      for (const part of chunks(accountIds)) {
        for (const row of await knex("balances").whereIn("account_id", part).select()) {
          out.set(row.account_id as string, { balance: nanos(big(row.balance)), version: int(row.version) });
        }
      }
      return out;
    },

    async entriesTotal(accountId) {
      const row = await knex("ledger_entries").where({ account_id: accountId }).whereNot({ kind: "platform_fee" }).sum({ total: "amount" }).first();
      return nanos(row?.total === null || row?.total === undefined ? 0n : big(row.total));
    },

    async entries(accountId) {
      const rows = await knex("ledger_entries").where({ account_id: accountId }).orderBy("id");
      return rows.map((r) => ({ kind: r.kind as LedgerKind, amount: big(r.amount), decisionId: r.decision_id as string, estimated: bool(r.estimated) }));
    },

    async usage(query) {
      const rows = await filtered(knex("usage_log"), query, "time").orderBy("time", "desc").limit(query.limit ?? 1000);
      return rows.map((r: Record<string, unknown>) => ({
        time: int(r.time), decisionId: r.decision_id as string, requestId: r.request_id as string,
        accountId: r.account_id as string, keyId: r.key_id as string, model: r.model as string, provider: r.provider as string,
        status: int(r.status), promptTokens: int(r.prompt_tokens), completionTokens: int(r.completion_tokens),
        cachedTokens: int(r.cached_tokens), reasoningTokens: int(r.reasoning_tokens), cost: nanos(big(r.cost)),
        estimated: bool(r.estimated), durationMs: int(r.duration_ms),
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
        day: r.day as string, keyId: r.key_id as string, model: r.model as string, requests: int(r.requests),
        promptTokens: int(r.prompt_tokens), completionTokens: int(r.completion_tokens), cachedTokens: int(r.cached_tokens),
        reasoningTokens: int(r.reasoning_tokens), cost: nanos(big(r.cost)), estimatedRequests: int(r.estimated_requests),
      }));
    },

    async deadLetters() {
      return (await knex("dead_letters").orderBy("id")).map((r) => ({ source: r.source as string, reason: r.reason as string, payload: r.payload as string }));
    },

    async prune(before) {
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

  async function rollUp(trx: Knex.Transaction, usageRows: Array<Record<string, unknown>>): Promise<void> {
    const groups = new Map<string, Record<string, unknown>>();
    for (const r of usageRows) {
      const day = utcDay(r.time as number);
      const id = `${r.account_id}\u0000${day}\u0000${r.key_id}\u0000${r.model}`;
      let g = groups.get(id);
      if (!g) {
        g = { account_id: r.account_id, day, key_id: r.key_id, model: r.model, requests: 0n, prompt_tokens: 0n, completion_tokens: 0n, cached_tokens: 0n, reasoning_tokens: 0n, cost: 0n, estimated_requests: 0n };
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
    const columns = ["requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost", "estimated_requests"];
    const merge = Object.fromEntries(columns.map((c) => [c, trx.raw(`usage_daily.${c} + excluded.${c}`)]));
    // Sorted so concurrent group commits touch rollup rows in the same order.
    const rows = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
    for (const part of chunks(rows)) {
      await trx("usage_daily").insert(part).onConflict(["account_id", "day", "key_id", "model"]).merge(merge);
    }
  }
}
