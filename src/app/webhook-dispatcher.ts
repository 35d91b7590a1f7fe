import type { Logger } from "../logging.js";
import { signatureHeader, WEBHOOK_SIGNATURE_HEADER } from "../domain/webhook-signature.js";
import {
  nextAttemptDelay,
  type ClaimedDelivery,
  type DeliveryOutcome,
  type RetryPolicy,
  type WebhookDeliveryStore,
  type WebhookDropReason,
  type WebhookSender,
  type WebhookSendResult,
} from "../domain/webhooks.js";
import { throttled } from "./rate-limits.js";

/** Options of the delivery worker (the `webhooks` config section, parsed). */
export interface WebhookDispatcherOptions {
  store: WebhookDeliveryStore;
  sender: WebhookSender;
  logger: Logger;
  clock: () => number;
  pollMs: number;
  /** One attempt's deadline; the lease on a claimed delivery outlasts it. */
  timeoutMs: number;
  concurrency: number;
  /** Deliveries of one account leased at once, every process together (default DEFAULT_IN_FLIGHT_PER_ACCOUNT). */
  perAccount?: number;
  /** Pending deliveries one webhook may have; the newest beyond it are dropped (checked every `trimMs`). */
  maxPendingPerWebhook?: number;
  /** A delivery still pending this long after it was written is dropped (checked hourly). */
  maxPendingAgeMs?: number;
  /** How often the pending cap is enforced (default 5 s). */
  trimMs?: number;
  retry: RetryPolicy;
  /** How often every low-balance watch is re-checked (the safety net under the meter's pokes). */
  lowBalanceSweepMs?: number;
  /** Finished deliveries older than this are deleted (hourly). */
  retentionMs?: number;
  /** Told what came of each attempt (metrics). */
  onAttempt?(outcome: DeliveryOutcome["kind"]): void;
  /** Told how many deliveries this process dropped and why (metrics; each one is in the delivery log too). */
  onDropped?(reason: WebhookDropReason, count: number): void;
  random?: () => number;
}

/** The running worker. */
export interface WebhookDispatcher {
  /** Looks for due deliveries now (after this process wrote events). */
  wake(): void;
  /** The balances of these accounts changed (a ledger commit): re-check their low-balance watches soon. */
  balancesChanged(accountIds: Iterable<string>): void;
  /** One round, awaited (tests): low-balance watches, then claims and attempts until nothing is due. */
  runOnce(): Promise<void>;
  /** Stops claiming; attempts in flight are abandoned (their leases run out and they are sent again later). */
  close(): Promise<void>;
}

/** Defaults of the pending cap and age limit (the config's defaults). */
export const DEFAULT_MAX_PENDING_PER_WEBHOOK = 1000;
export const DEFAULT_MAX_PENDING_AGE_MS = 3 * 86_400_000;

/** How many webhooks' failure lines are throttled separately; past it the table starts over. */
const THROTTLED_WEBHOOKS = 1000;

/**
 * A logger of one line per key per `everyMs` (with how many were suppressed), so a receiver that fails every attempt
 * writes one line a minute, not one per attempt; the table of keys is bounded.
 */
function perKeyThrottle(everyMs: number, log: (suppressed: number, detail: unknown) => void) {
  const byKey = new Map<string, (detail: unknown) => void>();
  return (key: string, detail: unknown) => {
    let t = byKey.get(key);
    if (!t) {
      if (byKey.size >= THROTTLED_WEBHOOKS) byKey.clear();
      t = throttled(everyMs, log);
      byKey.set(key, t);
    }
    t(detail);
  };
}

/** The outcome to record for an attempt's result: 2xx delivered; otherwise retry with back-off, or give up. */
export function outcomeOf(
  result: WebhookSendResult,
  attempts: number,
  retry: RetryPolicy,
  now: number,
  random: number,
): DeliveryOutcome {
  if (result.kind === "answered" && result.status >= 200 && result.status < 300)
    return { kind: "delivered", statusCode: result.status };
  const statusCode = result.kind === "answered" ? result.status : 0;
  const error = result.kind === "answered" ? `the receiver answered HTTP ${result.status}` : result.error;
  const delay = nextAttemptDelay(attempts, retry, random);
  return delay === undefined
    ? { kind: "failed", statusCode, error: `${error} (gave up after ${attempts} attempts)` }
    : { kind: "retry", statusCode, error, nextAttemptAt: now + delay };
}

/**
 * Starts the delivery worker: polls for due deliveries, leases at most `concurrency` at a time and sends each with
 * its signature. It runs beside the admin and meter roles, never on authz's Check path: a slow or silent receiver
 * holds only its own attempt (bounded by timeoutMs) and one of this worker's slots, and one account holds at most
 * `perAccount` slots of every process together (claims go round-robin across accounts). Each webhook's pending
 * deliveries are capped (the newest beyond it dropped every `trimMs`), pending ones past an age limit are dropped
 * hourly, and failure lines are throttled per webhook. Several processes may run it
 * at once: claims are leases, so a delivery is attempted by one process at a time (and again, at least once, if
 * that process dies mid-attempt).
 */
export function startWebhookDispatcher(options: WebhookDispatcherOptions): WebhookDispatcher {
  const { store, sender, logger, clock, retry, concurrency } = options;
  const random = options.random ?? Math.random;
  const leaseMs = options.timeoutMs + 30_000;
  const inFlight = new Set<Promise<void>>();
  const abort = new AbortController();
  const changed = new Set<string>();
  let closed = false;
  let claiming: Promise<number> | undefined;
  let syncing: Promise<void> | undefined;
  const warn = throttled(10_000, (suppressed, err) =>
    logger.warn({ err, suppressed }, "webhook delivery store unreachable; retrying"),
  );
  const attemptFailed = perKeyThrottle(60_000, (suppressed, detail) =>
    logger.info({ ...(detail as object), suppressed }, "webhook attempt failed"),
  );
  const leaseLost = throttled(60_000, (suppressed, detail) =>
    logger.info(
      { ...(detail as object), suppressed },
      "webhook delivery lease lost before its outcome was recorded; another attempt follows",
    ),
  );
  const maxPending = options.maxPendingPerWebhook ?? DEFAULT_MAX_PENDING_PER_WEBHOOK;
  const dropOverflow = async (): Promise<void> => {
    const count = await store.dropOverflow({ now: clock(), maxPending });
    if (count === 0) return;
    options.onDropped?.("pending_cap", count);
    logger.warn({ dropped: count, maxPending }, "webhook deliveries dropped: webhooks over their pending cap");
  };

  const attempt = async (d: ClaimedDelivery): Promise<void> => {
    const headers = {
      "content-type": "application/json",
      "user-agent": "Tollgate-Webhooks/1",
      [WEBHOOK_SIGNATURE_HEADER]: signatureHeader(d.secret, d.payload, clock()),
      "tollgate-event-id": d.eventId,
      "tollgate-event-type": d.eventType,
      "tollgate-delivery-attempt": String(d.attempts + 1),
    };
    const result = await sender.send({ url: d.url, headers, body: d.payload }, abort.signal);
    if (closed) return;
    const outcome = outcomeOf(result, d.attempts + 1, retry, clock(), random());
    options.onAttempt?.(outcome.kind);
    const log = { deliveryId: d.id, eventId: d.eventId, webhookId: d.webhookId, attempt: d.attempts + 1 };
    if (outcome.kind === "delivered") logger.debug(log, "webhook delivered");
    else attemptFailed(d.webhookId, { ...log, outcome: outcome.kind, error: outcome.error });
    if (!(await store.record(d, outcome, clock()))) leaseLost(log);
  };

  /** Claims as many due deliveries as there are free slots and starts them; returns how many. */
  const claim = async (): Promise<number> => {
    const room = concurrency - inFlight.size;
    if (closed || room <= 0) return 0;
    const claimed = await store.claim({ now: clock(), leaseMs, limit: room, perAccount: options.perAccount });
    for (const d of claimed) {
      const running: Promise<void> = attempt(d)
        .catch((err: unknown) => warn(err))
        .finally(() => {
          inFlight.delete(running);
          if (!closed) wake();
        });
      inFlight.add(running);
    }
    return claimed.length;
  };
  /** The claim under way, or a new one: one at a time, so together they never lease more than the free slots. */
  const claimNow = (): Promise<number> =>
    (claiming ??= claim()
      .catch((err: unknown) => {
        warn(err);
        return 0;
      })
      .finally(() => (claiming = undefined)));
  const wake = () => {
    if (!closed) void claimNow();
  };

  const syncLowBalance = (accountIds: string[] | undefined): Promise<void> =>
    store.syncLowBalance(accountIds, clock()).then((emitted) => {
      if (emitted > 0) wake();
    });
  const drainChanged = () => {
    if (closed || syncing || changed.size === 0) return;
    const ids = [...changed];
    changed.clear();
    syncing = syncLowBalance(ids)
      .catch((err: unknown) => warn(err))
      .finally(() => {
        syncing = undefined;
        drainChanged();
      });
  };

  const poll = setInterval(wake, options.pollMs);
  poll.unref();
  const sweep = setInterval(
    () => void syncLowBalance(undefined).catch((err: unknown) => warn(err)),
    options.lowBalanceSweepMs ?? 60_000,
  );
  sweep.unref();
  const trim = setInterval(() => void dropOverflow().catch((err: unknown) => warn(err)), options.trimMs ?? 5000);
  trim.unref();
  const retentionMs = options.retentionMs ?? 30 * 86_400_000;
  const maxAgeMs = options.maxPendingAgeMs ?? DEFAULT_MAX_PENDING_AGE_MS;
  const expireAndPrune = async (): Promise<void> => {
    const expired = await store.expirePending({ now: clock(), createdBefore: clock() - maxAgeMs });
    if (expired > 0) {
      options.onDropped?.("expired", expired);
      logger.warn({ dropped: expired, maxAgeMs }, "webhook deliveries dropped: pending longer than the age limit");
    }
    const pruned = await store.prune(clock() - retentionMs);
    if (pruned > 0) logger.info({ pruned }, "old webhook deliveries pruned");
  };
  const prune = setInterval(() => void expireAndPrune().catch((err: unknown) => warn(err)), 3_600_000);
  prune.unref();
  wake();

  return {
    wake,
    balancesChanged(accountIds) {
      for (const id of accountIds) changed.add(id);
      drainChanged();
    },
    async runOnce() {
      await syncLowBalance(undefined);
      await dropOverflow();
      for (;;) {
        // A claim that began before the deliveries above were due may miss them: wait it out, then claim afresh.
        await claiming;
        const started = await claimNow();
        // A finished attempt wakes a claim that may lease the rest: done only when nothing runs and none is under way.
        if (started === 0 && inFlight.size === 0 && claiming === undefined) return;
        await Promise.all([claiming, ...inFlight]);
      }
    },
    async close() {
      closed = true;
      clearInterval(poll);
      clearInterval(sweep);
      clearInterval(trim);
      clearInterval(prune);
      abort.abort();
      await Promise.allSettled([claiming, syncing, ...inFlight]);
    },
  };
}
