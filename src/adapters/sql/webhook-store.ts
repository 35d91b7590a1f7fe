import { randomBytes } from "node:crypto";
import type { Knex } from "knex";
import { newId } from "../../domain/api-key.js";
import { budgetAlertEvents } from "../../domain/budget-alerts.js";
import { periodWindow, spendField, type SpendTotal } from "../../domain/budgets.js";
import { nanos } from "../../domain/money.js";
import {
  DEFAULT_IN_FLIGHT_PER_ACCOUNT,
  lowBalanceTransition,
  subscribes,
  webhookPayload,
  type ClaimedDelivery,
  type DeliveryOutcome,
  type LowBalanceWatch,
  type WebhookDeliveryStatus,
  type WebhookDeliveryStore,
  type WebhookDeliveryView,
  type WebhookEventInput,
  type WebhookEventType,
  type WebhookRecord,
  type WebhookRepository,
} from "../../domain/webhooks.js";
import { budgetFromRow } from "./account-store.js";
import { big, bool, int, intOrNull, type Database, writeTransaction } from "./database.js";

type Row = Record<string, unknown>;
type K = Knex | Knex.Transaction;

/** The tables of migration 0010_webhooks (an outbox: events, and one delivery per subscribed webhook). */
export async function createWebhookTables(knex: Knex): Promise<void> {
  await knex.schema.createTable("webhooks", (t) => {
    t.string("id", 64).primary();
    t.string("account_id", 64).notNullable().references("accounts.id").index();
    t.text("url").notNullable();
    // JSON array of event types; [] is every type.
    t.text("event_types").notNullable();
    t.bigInteger("low_balance_threshold").nullable();
    // balance.low was sent and the balance has not been back at or above the threshold since.
    t.boolean("low_balance_alerted").notNullable().defaultTo(false);
    t.string("description", 200).notNullable().defaultTo("");
    // The HMAC key of the signature header: needed in clear to sign, never returned after creation.
    t.string("secret", 100).notNullable();
    t.bigInteger("created_at").notNullable();
    t.bigInteger("deleted_at").nullable();
  });
  await knex.schema.createTable("webhook_events", (t) => {
    t.string("id", 64).primary();
    t.string("account_id", 64).notNullable();
    t.string("type", 32).notNullable();
    // The exact JSON body every attempt sends.
    t.text("payload").notNullable();
    // Set by emitters that may detect one occurrence twice: a second event with the key is dropped.
    t.string("dedupe_key", 200).nullable().unique();
    t.bigInteger("created_at").notNullable();
  });
  await knex.schema.createTable("webhook_deliveries", (t) => {
    t.bigIncrements("id").primary();
    t.string("event_id", 64).notNullable().references("webhook_events.id");
    t.string("webhook_id", 64).notNullable().references("webhooks.id");
    t.string("account_id", 64).notNullable();
    // pending | delivered | failed | cancelled
    t.string("status", 16).notNullable();
    t.integer("attempts").notNullable().defaultTo(0);
    // When a pending delivery is due; while leased, when the lease runs out (a crashed worker's claim comes back).
    t.bigInteger("next_attempt_at").nullable();
    t.string("lease_token", 64).nullable();
    t.integer("last_status_code").notNullable().defaultTo(0);
    t.string("last_error", 500).notNullable().defaultTo("");
    t.bigInteger("last_attempt_at").nullable();
    t.bigInteger("delivered_at").nullable();
    t.bigInteger("created_at").notNullable();
    t.index(["status", "next_attempt_at"]);
    t.index(["account_id", "id"]);
    t.index(["webhook_id", "id"]);
  });
}

/** Drops the tables of migration 0010_webhooks. */
export async function dropWebhookTables(knex: Knex): Promise<void> {
  for (const table of ["webhook_deliveries", "webhook_events", "webhooks"]) await knex.schema.dropTableIfExists(table);
}

const webhookRecord = (r: Row): WebhookRecord => ({
  id: r.id as string,
  accountId: r.account_id as string,
  url: r.url as string,
  eventTypes: JSON.parse(r.event_types as string) as WebhookEventType[],
  lowBalanceThreshold: r.low_balance_threshold === null ? null : nanos(big(r.low_balance_threshold)),
  description: r.description as string,
  secret: r.secret as string,
  createdAt: int(r.created_at),
  deletedAt: intOrNull(r.deleted_at),
});

const deliveryView = (r: Row): WebhookDeliveryView => ({
  id: String(r.id),
  webhookId: r.webhook_id as string,
  accountId: r.account_id as string,
  eventId: r.event_id as string,
  eventType: r.type as WebhookEventType,
  status: r.status as WebhookDeliveryStatus,
  attempts: int(r.attempts),
  lastStatusCode: int(r.last_status_code),
  lastError: r.last_error as string,
  createdAt: int(r.created_at),
  lastAttemptAt: intOrNull(r.last_attempt_at),
  nextAttemptAt: r.status === "pending" ? intOrNull(r.next_attempt_at) : null,
  deliveredAt: intOrNull(r.delivered_at),
});

/**
 * Writes events to the outbox on `k` (the caller's transaction): one event row and one pending delivery per live
 * webhook of the account that subscribes to its type. Nothing is written when nobody subscribes; an event whose
 * dedupeKey exists already is dropped. Callable inside any SQL transaction (the ledger's, for budget alerts).
 */
export async function insertWebhookEvents(k: K, events: readonly WebhookEventInput[], now: number): Promise<void> {
  for (const event of events) {
    let q = k("webhooks").where({ account_id: event.accountId }).whereNull("deleted_at");
    if (event.webhookId) q = q.andWhere({ id: event.webhookId });
    const targets = (await q.select("id", "event_types")).filter((r: Row) =>
      subscribes({ eventTypes: JSON.parse(r.event_types as string) as WebhookEventType[] }, event.type),
    );
    if (targets.length === 0) continue;
    const id = newId("evt");
    const row = {
      id,
      account_id: event.accountId,
      type: event.type,
      payload: webhookPayload(id, event, now),
      dedupe_key: event.dedupeKey ?? null,
      created_at: now,
    };
    if (event.dedupeKey) {
      await k("webhook_events").insert(row).onConflict("dedupe_key").ignore();
      const stored = await k("webhook_events").where({ dedupe_key: event.dedupeKey }).first("id");
      if (stored?.id !== id) continue;
    } else {
      await k("webhook_events").insert(row);
    }
    await k("webhook_deliveries").insert(
      targets.map((t: Row) => ({
        event_id: id,
        webhook_id: t.id,
        account_id: event.accountId,
        status: "pending",
        next_attempt_at: now,
        created_at: now,
      })),
    );
  }
}

/** What one ledger commit added to one key's or account's spend (scopeId is the key id, or the account id). */
export interface ScopeSpend {
  accountId: string;
  scopeId: string;
  amount: bigint;
}

/**
 * Writes the budget alerts (budget.threshold, budget.exhausted) that one ledger commit's spend causes, in the ledger's
 * transaction: `totals` are the spend totals after the commit (addSpendTotals), so before = after − amount. One query
 * per batch (per 400 scopes) reads the budgets of the batch's keys and accounts, only of accounts with a live webhook:
 * without a subscriber an alert would write nothing, and the common batch reads no rows.
 */
export async function insertBudgetAlerts(
  trx: Knex.Transaction,
  spends: readonly ScopeSpend[],
  totals: ReadonlyMap<string, readonly SpendTotal[]>,
  now: number,
): Promise<void> {
  // Only spend that grew can cross a threshold.
  const grew = new Map(spends.filter((s) => s.amount > 0n).map((s) => [s.scopeId, s]));
  if (grew.size === 0) return;
  const watched = (q: Knex.QueryBuilder) =>
    q.whereExists(trx("webhooks as w").select(trx.raw("1")).whereRaw("w.account_id = a.id").whereNull("w.deleted_at"));
  const rows: Row[] = [];
  const scopes = [...grew.values()];
  for (let i = 0; i < scopes.length; i += 400) {
    const part = scopes.slice(i, i + 400);
    const keyIds = part.filter((s) => s.scopeId !== s.accountId).map((s) => s.scopeId);
    const accountIds = part.filter((s) => s.scopeId === s.accountId).map((s) => s.scopeId);
    const keys = watched(
      trx("api_keys as k")
        .join("accounts as a", "a.id", "k.account_id")
        .whereIn("k.id", keyIds.length > 0 ? keyIds : [""])
        .whereNotNull("k.budget_nanos")
        .select("k.id as scope_id", "a.time_zone", "k.budget_nanos", "k.budget_period"),
    );
    const accounts = watched(
      trx("accounts as a")
        .whereIn("a.id", accountIds.length > 0 ? accountIds : [""])
        .whereNotNull("a.budget_nanos")
        .select("a.id as scope_id", "a.time_zone", "a.budget_nanos", "a.budget_period"),
    );
    rows.push(...((await keys.unionAll(accounts)) as Row[]));
  }
  const events = rows.flatMap((r) => {
    const spend = grew.get(r.scope_id as string);
    const budget = budgetFromRow(r);
    if (!spend || !budget) return [];
    const window = periodWindow(budget.period, r.time_zone as string | null, now);
    const field = spendField(spend.scopeId, window.id);
    const after = totals.get(spend.accountId)?.find((t) => t.field === field)?.spent;
    if (after === undefined) return [];
    return budgetAlertEvents({
      accountId: spend.accountId,
      scope: spend.scopeId === spend.accountId ? "account" : "key",
      ...(spend.scopeId === spend.accountId ? {} : { keyId: spend.scopeId }),
      period: budget.period,
      window,
      budget: budget.limit,
      before: after - spend.amount,
      after,
    });
  });
  if (events.length > 0) await insertWebhookEvents(trx, events, now);
}

/** The admin repository's methods for webhooks (mixed into the SQL admin store, so they share its transactions). */
export function webhooksPart(k: K): WebhookRepository {
  return {
    async insertWebhook(w) {
      const balance =
        w.lowBalanceThreshold === null
          ? undefined
          : await k("balances").where({ account_id: w.accountId }).first("balance");
      await k("webhooks").insert({
        id: w.id,
        account_id: w.accountId,
        url: w.url,
        event_types: JSON.stringify(w.eventTypes),
        low_balance_threshold: w.lowBalanceThreshold === null ? null : w.lowBalanceThreshold.toString(),
        // A balance already below the threshold has not crossed it: balance.low waits for the next fall below.
        low_balance_alerted:
          w.lowBalanceThreshold !== null && (balance ? big(balance.balance) : 0n) < w.lowBalanceThreshold,
        description: w.description,
        secret: w.secret,
        created_at: w.createdAt,
        deleted_at: w.deletedAt,
      });
    },
    async webhook(id) {
      const row = await k("webhooks").where({ id }).first();
      return row ? webhookRecord(row) : undefined;
    },
    async webhooks(accountId) {
      const rows = await k("webhooks")
        .where({ account_id: accountId })
        .whereNull("deleted_at")
        .orderBy([{ column: "created_at" }, { column: "id" }]);
      return rows.map(webhookRecord);
    },
    async deleteWebhook(id, now) {
      await k("webhooks").where({ id }).whereNull("deleted_at").update({ deleted_at: now });
      await k("webhook_deliveries")
        .where({ webhook_id: id, status: "pending" })
        .update({ status: "cancelled", lease_token: null, next_attempt_at: null });
    },
    emitWebhookEvents: (events, now) => insertWebhookEvents(k, events, now),
    async webhookDeliveries({ accountId, webhookId, beforeId, limit }) {
      let q = k("webhook_deliveries as d")
        .join("webhook_events as e", "e.id", "d.event_id")
        .where("d.account_id", accountId)
        .select("d.*", "e.type")
        .orderBy("d.id", "desc")
        .limit(limit);
      if (webhookId) q = q.andWhere("d.webhook_id", webhookId);
      if (beforeId !== undefined) q = q.andWhere("d.id", "<", beforeId.toString());
      return (await q).map(deliveryView);
    },
  };
}

/**
 * The due deliveries a claim may take, ranked round-robin: `rn` is each delivery's place in its account's queue of due
 * ones (oldest due first), and an account with `busy` deliveries leased now offers only `perAccount − busy` of them.
 * Ordered by (rn, next_attempt_at), so every account's oldest comes before any account's second. Bindings: now, now,
 * perAccount.
 */
const FAIR_CANDIDATES = `
  with busy as (
    select account_id, count(*) as n from webhook_deliveries
    where status = 'pending' and lease_token is not null and next_attempt_at > ?
    group by account_id
  ), due as (
    select id, account_id, next_attempt_at,
           row_number() over (partition by account_id order by next_attempt_at, id) as rn
    from webhook_deliveries
    where status = 'pending' and next_attempt_at <= ?
  ), picked as (
    select due.id, due.rn, due.next_attempt_at from due left join busy on busy.account_id = due.account_id
    where due.rn + coalesce(busy.n, 0) <= ?
  )`;

/**
 * Leases due deliveries fairly (FAIR_CANDIDATES). PostgreSQL: the candidates are locked in their order with SKIP
 * LOCKED, so two workers never wait on or take each other's rows; a row another worker leased and committed since
 * this statement's snapshot fails the re-checked `next_attempt_at <= now` and is left out. Two workers racing on the
 * same account both rank its oldest rows first, so the second one skips them rather than exceeding perAccount.
 */
async function claimIds(
  db: Database,
  trx: Knex.Transaction,
  q: { now: number; leaseMs: number; limit: number; perAccount: number },
) {
  const token = randomBytes(16).toString("hex");
  const leased = { next_attempt_at: q.now + q.leaseMs, lease_token: token };
  if (db.dialect === "postgres") {
    const result = await trx.raw(
      `${FAIR_CANDIDATES}
       update webhook_deliveries set next_attempt_at = ?, lease_token = ?
       where id in (select d.id from webhook_deliveries d join picked p on p.id = d.id
                    where d.status = 'pending' and d.next_attempt_at <= ?
                    order by p.rn, p.next_attempt_at, d.id limit ? for update of d skip locked)
       returning id`,
      [q.now, q.now, q.perAccount, leased.next_attempt_at, token, q.now, q.limit],
    );
    return { token, ids: (result.rows as Row[]).map((r) => String(r.id)) };
  }
  // SQLite: the transaction holds the database's write lock (writeTransaction takes it first), so nobody claims in between.
  const ids = (
    (await trx.raw(`${FAIR_CANDIDATES} select id from picked order by rn, next_attempt_at, id limit ?`, [
      q.now,
      q.now,
      q.perAccount,
      q.limit,
    ])) as Row[]
  ).map((r: Row) => String(r.id));
  if (ids.length > 0) await trx("webhook_deliveries").whereIn("id", ids).update(leased);
  return { token, ids };
}

/** The columns that give a pending delivery up (status dropped) with the reason in the delivery log. */
const dropped = (reason: string) => ({
  status: "dropped",
  last_error: reason,
  next_attempt_at: null,
  lease_token: null,
});

/** A pending delivery nobody holds a live lease on (a lease that ran out counts as not held). */
const notLeased = (q: Knex.QueryBuilder, now: number) =>
  q.where((w) => w.whereNull("lease_token").orWhere("next_attempt_at", "<=", now));

/** The columns an outcome writes. */
function outcomeColumns(outcome: DeliveryOutcome, now: number): Row {
  const common = { last_status_code: outcome.statusCode, last_attempt_at: now, lease_token: null };
  switch (outcome.kind) {
    case "delivered":
      return { ...common, status: "delivered", last_error: "", delivered_at: now, next_attempt_at: null };
    case "retry":
      return {
        ...common,
        status: "pending",
        last_error: outcome.error.slice(0, 500),
        next_attempt_at: outcome.nextAttemptAt,
      };
    case "failed":
      return { ...common, status: "failed", last_error: outcome.error.slice(0, 500), next_attempt_at: null };
  }
}

/** Creates the delivery side of the outbox over the database (the worker's claims, low-balance watches, emits). */
export function createSqlWebhookDeliveryStore(db: Database): WebhookDeliveryStore {
  const { knex } = db;
  return {
    async claim({ perAccount = DEFAULT_IN_FLIGHT_PER_ACCOUNT, ...q }) {
      // A read first: an idle poll takes no write lock (SQLite) and opens no transaction.
      const due = await knex("webhook_deliveries")
        .where({ status: "pending" })
        .andWhere("next_attempt_at", "<=", q.now)
        .first("id");
      if (!due) return [];
      return writeTransaction(db, async (trx) => {
        const { token, ids } = await claimIds(db, trx, { ...q, perAccount });
        if (ids.length === 0) return [];
        const rows = await trx("webhook_deliveries as d")
          .join("webhook_events as e", "e.id", "d.event_id")
          .join("webhooks as w", "w.id", "d.webhook_id")
          .whereIn("d.id", ids)
          .select(
            "d.id",
            "d.event_id",
            "d.webhook_id",
            "d.attempts",
            "e.type",
            "e.payload",
            "w.url",
            "w.secret",
            "w.deleted_at",
          );
        // A delivery written by a transaction that committed after DeleteWebhook cancelled the pending ones (it only
        // read the webhook row, so nothing made it wait): cancelled here, never sent to a URL its account removed.
        const gone = rows.filter((r: Row) => r.deleted_at !== null).map((r: Row) => String(r.id));
        if (gone.length > 0)
          await trx("webhook_deliveries")
            .whereIn("id", gone)
            .update({ status: "cancelled", lease_token: null, next_attempt_at: null });
        return rows
          .filter((r: Row) => r.deleted_at === null)
          .map(
            (r: Row): ClaimedDelivery => ({
              id: String(r.id),
              eventId: r.event_id as string,
              eventType: r.type as WebhookEventType,
              webhookId: r.webhook_id as string,
              url: r.url as string,
              secret: r.secret as string,
              payload: r.payload as string,
              attempts: int(r.attempts),
              leaseToken: token,
            }),
          );
      });
    },
    async record(delivery, outcome, now) {
      const updated = await knex("webhook_deliveries")
        .where({ id: delivery.id, lease_token: delivery.leaseToken, status: "pending" })
        .update({ ...outcomeColumns(outcome, now), attempts: knex.raw("attempts + 1") });
      return updated === 1;
    },
    async emit(events, now) {
      // It reads the account's webhooks, then writes their deliveries.
      await writeTransaction(db, (trx) => insertWebhookEvents(trx, events, now));
    },
    async dropOverflow({ now, maxPending }) {
      // A read first (no write lock, SQLite): which webhooks are over the cap.
      const over = (
        await knex("webhook_deliveries")
          .where({ status: "pending" })
          .groupBy("webhook_id")
          .havingRaw("count(*) > ?", [maxPending])
          .select("webhook_id")
      ).map((r: Row) => r.webhook_id as string);
      if (over.length === 0) return 0;
      const reason = `dropped: the webhook already had ${maxPending} pending deliveries (webhooks.max_pending_per_webhook)`;
      // Each over-full webhook's pending deliveries past its oldest maxPending. Of two processes dropping at once, the
      // second re-checks status = 'pending' on the rows the first changed and counts none of them.
      const excess = knex
        .select("id")
        .from(
          knex("webhook_deliveries")
            .where({ status: "pending" })
            .whereIn("webhook_id", over)
            .select("id", knex.raw("row_number() over (partition by webhook_id order by id) as rn"))
            .as("ranked"),
        )
        .where("rn", ">", maxPending);
      return notLeased(knex("webhook_deliveries").whereIn("id", excess).where({ status: "pending" }), now).update(
        dropped(reason),
      );
    },
    async expirePending({ now, createdBefore }) {
      return notLeased(
        knex("webhook_deliveries").where({ status: "pending" }).andWhere("created_at", "<", createdBefore),
        now,
      ).update(dropped("dropped: pending for longer than webhooks.max_pending_age_ms"));
    },
    async prune(before) {
      const pruned = await knex("webhook_deliveries")
        .whereIn("status", ["delivered", "failed", "cancelled", "dropped"])
        .andWhere("created_at", "<", before)
        .delete();
      await knex("webhook_events")
        .where("created_at", "<", before)
        .whereNotExists(knex("webhook_deliveries").whereRaw("webhook_deliveries.event_id = webhook_events.id"))
        .delete();
      return pruned;
    },
    async syncLowBalance(accountIds, now) {
      if (accountIds && accountIds.length === 0) return 0;
      let watched = knex("webhooks").whereNull("deleted_at").whereNotNull("low_balance_threshold");
      if (accountIds) watched = watched.whereIn("account_id", [...accountIds]);
      if (!(await watched.first("id"))) return 0;
      return writeTransaction(db, async (trx) => {
        let q = trx("webhooks as w")
          .leftJoin("balances as b", "b.account_id", "w.account_id")
          .whereNull("w.deleted_at")
          .whereNotNull("w.low_balance_threshold")
          .select("w.id", "w.account_id", "w.low_balance_threshold", "w.low_balance_alerted", "b.balance");
        if (accountIds) q = q.whereIn("w.account_id", [...accountIds]);
        let emitted = 0;
        for (const r of (await q) as Row[]) {
          const watch: LowBalanceWatch = {
            webhookId: r.id as string,
            accountId: r.account_id as string,
            threshold: nanos(big(r.low_balance_threshold)),
            balance: nanos(r.balance === null ? 0n : big(r.balance)),
            alerted: bool(r.low_balance_alerted),
          };
          const transition = lowBalanceTransition(watch);
          if (!transition) continue;
          // Conditional flip: of two processes seeing the same crossing, one flips it and only that one emits.
          const flipped = await trx("webhooks")
            .where({ id: watch.webhookId, low_balance_alerted: transition === "rearm" })
            .update({ low_balance_alerted: transition === "fire" });
          if (flipped !== 1 || transition === "rearm") continue;
          await insertWebhookEvents(
            trx,
            [
              {
                type: "balance.low",
                accountId: watch.accountId,
                webhookId: watch.webhookId,
                data: { balance_nano_usd: watch.balance.toString(), threshold_nano_usd: watch.threshold.toString() },
              },
            ],
            now,
          );
          emitted++;
        }
        return emitted;
      });
    },
  };
}
