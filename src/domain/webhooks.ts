import type { Nanos } from "./money.js";

// Alerts by webhook: what an event is, how it is stored (an outbox row written in the transaction of the change
// that causes it, fanned out to one delivery per subscribed webhook) and the ports the use cases, the meter's
// after-commit side and the delivery worker reach storage through. Pure: the SQL lives in src/adapters/sql.

/** Every event type a webhook can subscribe to. */
export const WEBHOOK_EVENT_TYPES = [
  "balance.low",
  "budget.threshold",
  "budget.exhausted",
  "key.revoked",
  "key.rotated",
] as const;

/** One event type ("balance.low", …). */
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Whether `value` names an event type. */
export function isWebhookEventType(value: string): value is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(value);
}

/** `data` of balance.low: the committed balance fell below the webhook's threshold (it re-arms above it). */
export interface BalanceLowData {
  balance_nano_usd: string;
  threshold_nano_usd: string;
}

/** `data` of key.revoked. */
export interface KeyRevokedData {
  key_id: string;
  name: string;
  display_prefix: string;
  revoked_at: string;
}

/** `data` of key.rotated: the new secret's display prefix; the old secret works until `previous_secret_expires_at`. */
export interface KeyRotatedData {
  key_id: string;
  name: string;
  display_prefix: string;
  previous_secret_expires_at: string | null;
}

/**
 * `data` of budget.threshold (spend in the period crossed `threshold_percent` of the budget) and budget.exhausted
 * (spend reached the budget: further requests get 402 budget_exceeded until `resets_at`). `scope` says whose budget:
 * a key's (`key_id` set) or the account's.
 */
export interface BudgetAlertData {
  scope: "key" | "account";
  key_id?: string;
  /** "day", "week", "month" or "lifetime". */
  period: string;
  budget_nano_usd: string;
  spent_nano_usd: string;
  /** budget.threshold only: the soft threshold crossed, e.g. 80. */
  threshold_percent?: number;
  period_start: string;
  /** null for a lifetime budget. */
  resets_at: string | null;
}

/** The data each event type carries. */
export interface WebhookEventData {
  "balance.low": BalanceLowData;
  "budget.threshold": BudgetAlertData;
  "budget.exhausted": BudgetAlertData;
  "key.revoked": KeyRevokedData;
  "key.rotated": KeyRotatedData;
}

/**
 * An event to emit. `dedupeKey`, when set, makes emitting idempotent: a second event with the same key is dropped
 * (e.g. `budget.exhausted:key_…:day:2026-12-01`, so a crossing detected twice is sent once). `webhookId` narrows the
 * fan-out to one webhook (balance.low: each webhook has its own threshold).
 */
export type WebhookEventInput = {
  [T in WebhookEventType]: {
    type: T;
    accountId: string;
    data: WebhookEventData[T];
    dedupeKey?: string;
    webhookId?: string;
  };
}[WebhookEventType];

/** The JSON body every delivery of an event POSTs (the same bytes on every attempt). */
export interface WebhookPayload {
  /** evt_…: stable across retries; receivers de-duplicate by it. */
  id: string;
  type: WebhookEventType;
  /** When the event happened (ISO 8601, UTC). */
  created: string;
  account_id: string;
  data: WebhookEventData[WebhookEventType];
}

/** The body of an event, serialised once when it is written to the outbox. */
export function webhookPayload(id: string, event: WebhookEventInput, now: number): string {
  const payload: WebhookPayload = {
    id,
    type: event.type,
    created: new Date(now).toISOString(),
    account_id: event.accountId,
    data: event.data,
  };
  return JSON.stringify(payload);
}

/** A webhook as stored (the secret included: adapters and use cases only, never a response after creation). */
export interface WebhookRecord {
  id: string;
  accountId: string;
  url: string;
  /** Empty: every type. */
  eventTypes: WebhookEventType[];
  /** balance.low threshold in nano-USD, or null for none. */
  lowBalanceThreshold: Nanos | null;
  description: string;
  secret: string;
  createdAt: number;
  deletedAt: number | null;
}

/** Whether a webhook receives events of `type`. */
export function subscribes(webhook: Pick<WebhookRecord, "eventTypes">, type: WebhookEventType): boolean {
  return webhook.eventTypes.length === 0 || webhook.eventTypes.includes(type);
}

/**
 * Where a delivery stands. dropped: given up without (further) attempts because its webhook had too many pending
 * deliveries or it waited too long (last_error says which).
 */
export type WebhookDeliveryStatus = "pending" | "delivered" | "failed" | "cancelled" | "dropped";

/** One row of the delivery log: an (event, webhook) pair and how its attempts went. */
export interface WebhookDeliveryView {
  /** A decimal bigint. */
  id: string;
  webhookId: string;
  accountId: string;
  eventId: string;
  eventType: WebhookEventType;
  status: WebhookDeliveryStatus;
  attempts: number;
  lastStatusCode: number;
  lastError: string;
  createdAt: number;
  lastAttemptAt: number | null;
  nextAttemptAt: number | null;
  deliveredAt: number | null;
}

/** What the admin use cases read and write about webhooks, inside the admin store's transactions. */
export interface WebhookRepository {
  insertWebhook(w: WebhookRecord): Promise<void>;
  /** The webhook, deleted ones included (their delivery log stays readable). */
  webhook(id: string): Promise<WebhookRecord | undefined>;
  /** The account's webhooks that are not deleted, oldest first. */
  webhooks(accountId: string): Promise<WebhookRecord[]>;
  /** Marks it deleted and cancels its pending deliveries. */
  deleteWebhook(id: string, now: number): Promise<void>;
  /**
   * Writes events to the outbox in the caller's transaction, one delivery per subscribed webhook of the account. An
   * event nobody subscribes to writes nothing; one whose dedupeKey was used before is dropped.
   */
  emitWebhookEvents(events: readonly WebhookEventInput[], now: number): Promise<void>;
  /** The delivery log, newest first, strictly before `beforeId`. */
  webhookDeliveries(q: {
    accountId: string;
    webhookId?: string;
    beforeId?: bigint;
    limit: number;
  }): Promise<WebhookDeliveryView[]>;
}

/** A delivery the worker has leased: what to send, where, and the lease that lets it record the outcome. */
export interface ClaimedDelivery {
  id: string;
  eventId: string;
  eventType: WebhookEventType;
  webhookId: string;
  url: string;
  secret: string;
  /** The event's JSON body (identical on every attempt). */
  payload: string;
  /** Attempts made before this one. */
  attempts: number;
  /** Proves this claim when the outcome is recorded; a claim whose lease ran out and was re-claimed loses. */
  leaseToken: string;
}

/** The outcome of one attempt. */
export type DeliveryOutcome =
  | { kind: "delivered"; statusCode: number }
  | { kind: "retry"; statusCode: number; error: string; nextAttemptAt: number }
  | { kind: "failed"; statusCode: number; error: string };

/** A webhook with a balance.low threshold, beside the account's committed balance. */
export interface LowBalanceWatch {
  webhookId: string;
  accountId: string;
  threshold: Nanos;
  balance: Nanos;
  /** Whether balance.low was sent since the balance was last at or above the threshold. */
  alerted: boolean;
}

/**
 * The outbox as the delivery worker and the after-commit side see it. Claims are leases, so several control-plane
 * processes share the work without sending one delivery twice while its lease holds (PostgreSQL: SKIP LOCKED).
 */
export interface WebhookDeliveryStore {
  /**
   * Leases up to `limit` due deliveries of live webhooks until `now + leaseMs`, round-robin across accounts (each
   * account's oldest due first, then each one's second, …), never leaving an account more than `perAccount`
   * (default DEFAULT_IN_FLIGHT_PER_ACCOUNT) leased at once across every process: one account's backlog cannot take
   * every slot while another account has a delivery due.
   */
  claim(q: { now: number; leaseMs: number; limit: number; perAccount?: number }): Promise<ClaimedDelivery[]>;
  /**
   * Marks dropped each webhook's pending deliveries beyond its oldest `maxPending` (the newest go: a full queue
   * refuses new deliveries), except those leased now. Returns how many it dropped (another process's drops excluded).
   */
  dropOverflow(q: { now: number; maxPending: number }): Promise<number>;
  /** Marks dropped the pending deliveries created before `createdBefore` that are not leased now; returns how many. */
  expirePending(q: { now: number; createdBefore: number }): Promise<number>;
  /** Records one attempt's outcome; false when the lease was lost (someone else owns the delivery now). */
  record(delivery: Pick<ClaimedDelivery, "id" | "leaseToken">, outcome: DeliveryOutcome, now: number): Promise<boolean>;
  /** Emits events in a transaction of its own (after-commit callers; use dedupeKey to stay idempotent). */
  emit(events: readonly WebhookEventInput[], now: number): Promise<void>;
  /**
   * Applies `decide` to each watched webhook (of `accountIds`, or all) in one transaction, taking each flip of the
   * alerted flag only if nobody flipped it first, and emits balance.low where it says fire. Returns events emitted.
   */
  syncLowBalance(accountIds: readonly string[] | undefined, now: number): Promise<number>;
  /**
   * Deletes finished deliveries (delivered, failed, cancelled, dropped) created before `before`, and events left
   * without any.
   */
  prune(before: number): Promise<number>;
}

/** How many deliveries of one account may be leased at once (every process together) when the caller sets none. */
export const DEFAULT_IN_FLIGHT_PER_ACCOUNT = 4;

/** Why deliveries were dropped (a metric label): the webhook's pending cap, or the pending age limit. */
export type WebhookDropReason = "pending_cap" | "expired";

/** What happens to a balance.low watch: fire (fell below, not yet alerted), re-arm (back at or above), nothing. */
export function lowBalanceTransition(watch: LowBalanceWatch): "fire" | "rearm" | undefined {
  if (watch.balance < watch.threshold) return watch.alerted ? undefined : "fire";
  return watch.alerted ? "rearm" : undefined;
}

/** Retry policy of the delivery worker. */
export interface RetryPolicy {
  baseMs: number;
  maxMs: number;
  maxAttempts: number;
}

/**
 * When to try again after `attempts` failed attempts, or undefined to give up: exponential back-off (base × 2^(n-1),
 * capped) with "equal jitter" (half fixed, half random), so receivers recovering from an outage are not hit by every
 * sender in step. `random` is in [0, 1).
 */
export function nextAttemptDelay(attempts: number, policy: RetryPolicy, random: number): number | undefined {
  if (attempts >= policy.maxAttempts) return undefined;
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempts - 1, 30));
  return Math.round(exp / 2 + (exp / 2) * random);
}

/** One HTTP attempt of a delivery. */
export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** What an attempt got: an HTTP answer (any status), or no answer and why (timeout, refused, blocked target). */
export type WebhookSendResult = { kind: "answered"; status: number } | { kind: "failed"; error: string };

/** Sends one attempt (HTTP, with the SSRF guard and a deadline); never throws. */
export interface WebhookSender {
  send(request: WebhookRequest, signal?: AbortSignal): Promise<WebhookSendResult>;
}
