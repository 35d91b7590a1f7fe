import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { AUTHZ_METADATA_KEYS } from "../contract/index.js";
import type { DenyCode } from "../domain/verdict.js";
import { ESTIMATE_REASONS, type Ledger } from "../domain/metering.js";
import type { Logger } from "../logging.js";
import type { WebhookDropReason } from "../domain/webhooks.js";
import { zeroCounts } from "../dataplane/accesslog/meter.js";

/** Every Check outcome authz reports; each gets its counter child up front so the hot path never builds a label set. */
export const CHECK_OUTCOMES = [
  "allow",
  "answer",
  "missing_api_key",
  "invalid_api_key",
  "expired_api_key",
  "revoked_api_key",
  "invalid_request",
  "request_too_large",
  "unsupported_endpoint",
  "model_not_found",
  "model_not_permitted",
  "insufficient_credits",
  "budget_exceeded",
  "rate_limit_exceeded",
  "concurrency_limit_exceeded",
  "unavailable",
] as const satisfies ReadonlyArray<DenyCode | "allow" | "answer">;

/** Parts of the process whose Redis connection can fail; a fixed set, so the label never grows. */
export type RedisComponent = "admission" | "key_events";
/** Parts of the process whose SQL work can fail; a fixed set, so the label never grows. */
export type SqlComponent = "ledger" | "key_cache" | "catalogue" | "readiness";

const REDIS_COMPONENTS: readonly RedisComponent[] = ["admission", "key_events"];
const SQL_COMPONENTS: readonly SqlComponent[] = ["ledger", "key_cache", "catalogue", "readiness"];
const METER_OUTCOMES = [
  "billed",
  "already_billed",
  "skipped",
  "dead_lettered",
  "forged",
  "spooled",
  "dropped",
] as const;

/** The meter's running totals, read on scrape (the meter already keeps them); `spooled` where a spool exists. */
export interface MeterTotalsSource {
  readonly totals: {
    received: number;
    billed: number;
    alreadyBilled: number;
    skipped: number;
    deadLettered: number;
    forged?: number;
    spooled?: number;
    dropped?: number;
    overReservation?: number;
    /** First billings that are estimates, by reason (ESTIMATE_REASONS). */
    estimated?: Readonly<Record<string, number>>;
  };
  /** Batches waiting in the meter's local spool for the ledger to come back. */
  spooled?(): number;
}

/**
 * One process's metrics: its own registry (not prom-client's global one), so several control planes can run in one
 * process (tests) without sharing counters. Hot-path hooks are counter increments on pre-created children.
 */
export interface Metrics {
  readonly registry: Registry;
  /** The authz `onDecision` hook: one counter increment and one histogram observation per Check. */
  observeCheck(outcome: string, seconds: number): void;
  /** Wraps a ledger so each group commit records its size, its lag and its failures (other methods pass through). */
  observeLedger<L extends Ledger>(ledger: L, logger?: Logger): L;
  /** Counts a Redis error of one component (connection errors, failed commands seen by that component). */
  redisError(component: RedisComponent): void;
  /** Counts a SQL error of one component. */
  sqlError(component: SqlComponent): void;
  /** Reads the meter's totals on each scrape into the access-log counters. */
  watchMeter(meter: MeterTotalsSource): void;
  /** Reads the number of open credit reservations on each scrape. */
  watchReservations(count: () => Promise<number>): void;
  /** Counts an admission the credit gate refused before the balance: reservations full, or fenced after a Redis loss. */
  creditRefused(reason: CreditRefusalReason): void;
  /** Counts a Redis data loss this process detected (open reservations lost; credit fenced for one reservation TTL). */
  creditDataLoss(): void;
  /** Counts one webhook delivery attempt by what came of it. */
  webhookAttempt(outcome: WebhookAttemptOutcome): void;
  /** Counts webhook deliveries this process dropped, by why (each one also has status dropped in the delivery log). */
  webhookDropped(reason: WebhookDropReason, count: number): void;
  /** The exposition (text format 0.0.4) and its content type, for /metrics. */
  render(): Promise<{ contentType: string; body: string }>;
}

/** What came of a webhook delivery attempt: delivered (2xx), retry scheduled, or failed for good. */
export type WebhookAttemptOutcome = "delivered" | "retry" | "failed";
const WEBHOOK_OUTCOMES: readonly WebhookAttemptOutcome[] = ["delivered", "retry", "failed"];

const WEBHOOK_DROP_REASONS: readonly WebhookDropReason[] = ["pending_cap", "expired"];

/** Why the credit gate refused before looking at the balance. */
export type CreditRefusalReason = "account_full" | "total_full" | "fenced";
const CREDIT_REFUSALS: readonly CreditRefusalReason[] = ["account_full", "total_full", "fenced"];

/** Check latency buckets: a warm Check takes tens of microseconds, a cold one a SQL round trip, a slow one Redis. */
const CHECK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * Creates the metrics of one process. `processMetrics` adds prom-client's default process and Node.js metrics
 * (CPU, memory, event-loop lag, GC); they install process-wide observers, so only `tollgate serve` turns them on.
 */
export function createMetrics(options: { processMetrics?: boolean; clock?: () => number } = {}): Metrics {
  const clock = options.clock ?? Date.now;
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });

  const checks = new Counter({
    name: "tollgate_authz_checks_total",
    help: "Checks answered, by verdict (allow, answer, or the deny code).",
    labelNames: ["verdict"],
    registers: [registry],
  });
  const checkChildren = new Map<string, Counter.Internal>(CHECK_OUTCOMES.map((o) => [o, zeroed(checks.labels(o))]));
  const checkSeconds = new Histogram({
    name: "tollgate_authz_check_duration_seconds",
    help: "Time to decide one Check, in seconds.",
    buckets: CHECK_BUCKETS,
    registers: [registry],
  });

  const received = new Counter({
    name: "tollgate_meter_entries_received_total",
    help: "Access-log entries the meter received (ALS and reconcile).",
    registers: [registry],
  });
  const entries = new Counter({
    name: "tollgate_meter_entries_total",
    help: "Access-log entries by what the meter did: billed, already_billed (duplicate), skipped (denied or not final), dead_lettered (malformed or refused), forged (billing metadata whose signature does not verify; never billed), spooled (ledger unreachable; billed on replay), dropped (malformed, no valid signature, past the per-minute dead-letter sample: counted, not stored).",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const entryChildren = Object.fromEntries(METER_OUTCOMES.map((o) => [o, zeroed(entries.labels(o))])) as Record<
    (typeof METER_OUTCOMES)[number],
    Counter.Internal
  >;
  const overReservation = new Counter({
    name: "tollgate_meter_usage_over_reservation_total",
    help: "Requests billed (first billing) more than 25% above authz's signed credit reservation: billed as counted, but the unsigned usage counts or the reservation's prompt estimate (images) deserve a look.",
    registers: [registry],
  });
  overReservation.inc(0);
  const estimated = new Counter({
    name: "tollgate_meter_usage_estimated_total",
    help: "Requests billed (first billing) from the usage filter's estimate instead of the provider's usage, by reason: compressed (the provider compressed despite accept-encoding: identity; fix the provider route), cut_short (upstream reset or client gone), too_large (JSON body over the filter's limit), invalid_usage (the provider's usage has counts that cannot be billed: cached above prompt, past 2^53), unreadable (not JSON or SSE, or JSON that does not parse), no_usage (no usage reported), no_usage_metadata (no usage and the provider never received the whole request; billed at zero), upstream_reset (the provider broke off before answering: UR, UC, UPE, LR; billed at zero), and, billed the signed prompt estimate at the input price because the provider received the whole request but no usage was read: client_left (the client went away first: DC, DR), stream_idle (Envoy's stream_idle_timeout: SI), upstream_timeout (UT), no_usage_read (none of those), unspecified (the filter gave no known reason).",
    labelNames: ["reason"],
    registers: [registry],
  });
  const estimatedChildren = new Map<string, Counter.Internal>(
    ESTIMATE_REASONS.map((r) => [r, zeroed(estimated.labels(r))]),
  );
  const seenEstimated = new Map<string, number>();
  const batchSize = new Histogram({
    name: "tollgate_meter_ledger_batch_size",
    help: "Items (usage events, expired reservations, dead letters) per ledger group commit.",
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000],
    registers: [registry],
  });
  const commitSeconds = new Histogram({
    name: "tollgate_meter_ledger_commit_duration_seconds",
    help: "Time one ledger group commit took, in seconds.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const lag = new Histogram({
    name: "tollgate_meter_ledger_lag_seconds",
    help: "Time from a request's end (start + duration in its access-log entry) to its usage being committed, in seconds.",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    registers: [registry],
  });
  const lastCommit = new Gauge({
    name: "tollgate_meter_last_commit_timestamp_seconds",
    help: "Unix time of the last successful ledger commit (0 before the first).",
    registers: [registry],
  });
  lastCommit.set(0);

  const redisErrors = new Counter({
    name: "tollgate_redis_errors_total",
    help: "Redis errors, by component.",
    labelNames: ["component"],
    registers: [registry],
  });
  const redisChildren = Object.fromEntries(REDIS_COMPONENTS.map((c) => [c, zeroed(redisErrors.labels(c))])) as Record<
    RedisComponent,
    Counter.Internal
  >;
  const sqlErrors = new Counter({
    name: "tollgate_sql_errors_total",
    help: "SQL errors, by component.",
    labelNames: ["component"],
    registers: [registry],
  });
  const sqlChildren = Object.fromEntries(SQL_COMPONENTS.map((c) => [c, zeroed(sqlErrors.labels(c))])) as Record<
    SqlComponent,
    Counter.Internal
  >;

  // Scrape-time sources: the meter's totals become counter increments (deltas since the last scrape).
  const meters: MeterTotalsSource[] = [];
  const seen = { ...zeroCounts(), overReservation: 0 };
  const syncMeter = () => {
    const now = { ...zeroCounts(), overReservation: 0 };
    for (const m of meters) for (const k of Object.keys(now) as Array<keyof typeof now>) now[k] += m.totals[k] ?? 0;
    const delta = (k: keyof typeof now) => {
      const d = now[k] - seen[k];
      seen[k] = now[k];
      return Math.max(d, 0);
    };
    received.inc(delta("received"));
    entryChildren.billed.inc(delta("billed"));
    entryChildren.already_billed.inc(delta("alreadyBilled"));
    entryChildren.skipped.inc(delta("skipped"));
    entryChildren.dead_lettered.inc(delta("deadLettered"));
    entryChildren.forged.inc(delta("forged"));
    entryChildren.spooled.inc(delta("spooled"));
    entryChildren.dropped.inc(delta("dropped"));
    overReservation.inc(delta("overReservation"));
    for (const [reason, child] of estimatedChildren) {
      const total = meters.reduce((sum, m) => sum + (m.totals.estimated?.[reason] ?? 0), 0);
      child.inc(Math.max(total - (seenEstimated.get(reason) ?? 0), 0));
      seenEstimated.set(reason, total);
    }
  };
  new Gauge({
    name: "tollgate_meter_spool_batches",
    help: "Batches in the meter's local spool, waiting for the ledger (PostgreSQL) to come back.",
    registers: [registry],
    collect() {
      this.set(meters.reduce((sum, m) => sum + (m.spooled?.() ?? 0), 0));
    },
  });
  let reservationCount: (() => Promise<number>) | undefined;
  new Gauge({
    name: "tollgate_credit_reservations_open",
    help: "Credit reservations held and not yet settled (this process's gate; with Redis, every replica's).",
    registers: [registry],
    async collect() {
      if (!reservationCount) return;
      try {
        this.set(await reservationCount());
      } catch {
        redisChildren.admission.inc();
      }
    },
  });

  const refusals = new Counter({
    name: "tollgate_credit_reservations_refused_total",
    help: "Admissions the credit gate refused before the balance: account_full / total_full (too many unsettled reservations; 429), fenced (after a Redis data loss; 503).",
    labelNames: ["reason"],
    registers: [registry],
  });
  const refusalChildren = Object.fromEntries(CREDIT_REFUSALS.map((r) => [r, zeroed(refusals.labels(r))])) as Record<
    CreditRefusalReason,
    Counter.Internal
  >;
  const dataLosses = new Counter({
    name: "tollgate_credit_redis_data_losses_total",
    help: "Times this process fenced credit for one reservation TTL because the Redis dataset was emptied or its server changed (restart, restore, failover).",
    registers: [registry],
  });
  dataLosses.inc(0);
  const webhookAttempts = new Counter({
    name: "tollgate_webhook_attempts_total",
    help: "Webhook delivery attempts by outcome: delivered (2xx), retry (failed, another attempt scheduled), failed (gave up after webhooks.max_attempts).",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const webhookChildren = Object.fromEntries(
    WEBHOOK_OUTCOMES.map((o) => [o, zeroed(webhookAttempts.labels(o))]),
  ) as Record<WebhookAttemptOutcome, Counter.Internal>;
  const webhookDrops = new Counter({
    name: "tollgate_webhook_deliveries_dropped_total",
    help: "Webhook deliveries this process gave up without (further) attempts, by reason: pending_cap (the webhook already had webhooks.max_pending_per_webhook pending; the newest go), expired (pending longer than webhooks.max_pending_age_ms). Each has status dropped in the delivery log.",
    labelNames: ["reason"],
    registers: [registry],
  });
  const dropChildren = Object.fromEntries(
    WEBHOOK_DROP_REASONS.map((r) => [r, zeroed(webhookDrops.labels(r))]),
  ) as Record<WebhookDropReason, Counter.Internal>;

  return {
    registry,
    creditRefused: (reason) => refusalChildren[reason].inc(),
    creditDataLoss: () => dataLosses.inc(),
    webhookAttempt: (outcome) => webhookChildren[outcome].inc(),
    webhookDropped: (reason, count) => dropChildren[reason].inc(count),
    observeCheck(outcome, seconds) {
      (checkChildren.get(outcome) ?? checks.labels(outcome)).inc();
      checkSeconds.observe(seconds);
    },
    observeLedger(ledger, logger) {
      // Own methods copied (so a spread of the result still works), prototype kept; only commit is replaced.
      const observed = Object.assign(Object.create(Object.getPrototypeOf(ledger) as object) as typeof ledger, ledger);
      observed.commit = async (batch) => {
        const started = process.hrtime.bigint();
        let result: Awaited<ReturnType<typeof ledger.commit>>;
        try {
          result = await ledger.commit(batch);
        } catch (error) {
          sqlChildren.ledger.inc();
          logger?.error(
            {
              err: error,
              decisionIds: batch.events.slice(0, 50).map((e) => e.decisionId),
              entries: batch.events.length,
            },
            "ledger batch not committed",
          );
          throw error;
        }
        commitSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        batchSize.observe(batch.events.length + batch.expired.length + batch.deadLetters.length);
        const now = clock();
        for (const e of batch.events) lag.observe(Math.max(0, now - (e.startMs + e.durationMs)) / 1000);
        lastCommit.set(now / 1000);
        for (const dead of batch.deadLetters) {
          logger?.warn(
            { decisionId: decisionIdOf(dead.payload), source: dead.source, reason: dead.reason },
            "access-log entry dead-lettered",
          );
        }
        return result;
      };
      return observed;
    },
    redisError: (component) => redisChildren[component].inc(),
    sqlError: (component) => sqlChildren[component].inc(),
    watchMeter(meter) {
      meters.push(meter);
    },
    watchReservations(count) {
      reservationCount = count;
    },
    async render() {
      syncMeter();
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/** Exports a labelled child at 0 from the start, so rate() and absence-free alerts work before the first event. */
function zeroed(child: Counter.Internal): Counter.Internal {
  child.inc(0);
  return child;
}

const DECISION_ID_IN_PAYLOAD = new RegExp(`"${AUTHZ_METADATA_KEYS.decisionId}"\\s*:\\s*"([^"]{1,100})"`);

/** The decision id inside a dead letter's raw entry (proto JSON or file-log JSON), when it has one. */
function decisionIdOf(payload: string): string | undefined {
  return DECISION_ID_IN_PAYLOAD.exec(payload)?.[1];
}
