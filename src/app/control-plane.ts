import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { createKeyCache, type KeyCache } from "../adapters/memory/key-cache.js";
import type { KeyStore } from "../adapters/sql/key-store.js";
import { keyBudgetStatus } from "../domain/budgets.js";
import { createTokenBuckets } from "../domain/token-bucket.js";
import { warmUpTokenEstimate } from "../domain/token-estimate.js";
import { startGrantSweep } from "./grants.js";
import { startMetering, takeAdmissionLease, type Metering } from "./metering.js";
import type { Lease } from "../adapters/sql/coordination-store.js";
import { openStores, type Database, type Stores } from "./stores.js";
import { checkPlaintextListeners, tlsFor, type Config } from "../config/config.js";
import { holdInTurn, type AdmissionDeps } from "../domain/admission.js";
import { releaseReservations } from "../domain/credits.js";
import type { CatalogueSnapshot } from "../domain/catalogue.js";
import type { LedgerStore } from "../domain/ports.js";
import { authorizationService } from "../dataplane/authz/authz-service.js";
import { createChatReaderPool } from "../dataplane/authz/chat-reader-pool.js";
import { serverCredentials, startGrpcServer, type RunningGrpcServer } from "../dataplane/grpc/grpc-server.js";
import type { Logger } from "../logging.js";
import { resolveSigningSecrets, type SigningSecrets } from "../config/signing-secret.js";
import { createDecisionSigner, createDecisionVerifier } from "../dataplane/signing/decision-signature.js";
import { createRedisClient } from "../adapters/redis/client.js";
import { createRedisKeyEvents, subscribeKeyEvents } from "../adapters/redis/invalidation.js";
import { createPgKeyEvents, pgKeyEventsChannel, subscribePgKeyEvents } from "../adapters/sql/pg-key-events.js";
import type { KeyChange } from "../domain/key-events.js";
import { startRateLimiting, throttled, withFailurePolicy, type RateLimiting } from "./rate-limits.js";
import { createRedisQuota } from "../adapters/redis/quota.js";
import { startAdminRole } from "../admin/admin-role.js";
import type { RunningAdminServer } from "../admin/admin-server.js";
import { createMetrics, type Metrics } from "../observability/metrics.js";
import { startMetricsServer, type RunningMetricsServer } from "../observability/metrics-server.js";
import { loadCatalogueView, type CatalogueView } from "./catalogue-view.js";
import { createClosers, type Closers } from "./closers.js";
import { createWebhookSender } from "../adapters/http/webhook-sender.js";
import { createLowBalanceListener } from "../dataplane/accesslog/low-balance.js";
import { createTargetPolicy } from "../domain/webhook-targets.js";
import { startWebhookDispatcher, type WebhookDispatcher } from "./webhook-dispatcher.js";

/** Which roles a process runs. */
export type Role = "authz" | "meter" | "admin";

/** A running control plane; `close` drains and stops it. */
export interface ControlPlane {
  stores: Stores;
  keyCache: KeyCache;
  /** The rate limiter in use (in-process, or Redis when redis.url is set) and its Redis connection. */
  rateLimiting: RateLimiting;
  /** Key mutations that also invalidate this process's cache at once (the admin API and tests go through here). */
  keys: Pick<KeyStore, "revoke" | "rotate">;
  authz?: RunningGrpcServer;
  /** The admin API (Connect, gRPC, gRPC-Web) when this process runs the admin role. */
  admin?: RunningAdminServer;
  /** Credit gate, meter and (meter role) the StreamAccessLogs server. */
  metering: Metering;
  /** This process's Prometheus metrics (served on admin /metrics, and on metrics.listen when set). */
  metrics: Metrics;
  /** The standalone /metrics listener when metrics.listen is set. */
  metricsServer?: RunningMetricsServer;
  /** Whether this process can serve: started, the store answers, Redis (when configured) is connected, not draining. */
  ready(): Promise<boolean>;
  snapshot(): CatalogueSnapshot;
  /** Reloads catalogue and plans now (they also reload by polling). */
  reloadCatalogue(): Promise<void>;
  /** Drains (health NOT_SERVING, then shutdown.drain_delay_ms), then closes every part in reverse start order. */
  close(): Promise<void>;
}

/** Options for starting the control plane. */
export interface ControlPlaneOptions {
  roles: readonly Role[];
  logger: Logger;
  /** Serve the mock provider's credentials for every provider without one (demos and tests). */
  mockProviders?: boolean;
  clock?: () => number;
  schema?: string;
  /** Metrics to record into (serve passes one with process metrics); a fresh registry otherwise. */
  metrics?: Metrics;
  /** Replaces the ledger store every part uses with a wrapper of it (failure drills wrap it to pause inside a commit). */
  wrapLedger?: (ledger: LedgerStore, db: Database) => LedgerStore;
}

/** What every start step shares: the inputs, the metrics registry and the list of closers so far. */
interface Start {
  config: Config;
  options: ControlPlaneOptions;
  clock: () => number;
  logger: Logger;
  metrics: Metrics;
  /** Set when this process signs (authz) or verifies (meter) decisions. */
  secrets?: SigningSecrets;
  closers: Closers;
}

/**
 * Starts the requested roles on one set of stores. Each part starts in order and registers its closer; close()
 * drains first and then runs the closers in reverse, and a failure mid-start closes what had started, in reverse.
 */
export async function startControlPlane(config: Config, options: ControlPlaneOptions): Promise<ControlPlane> {
  const start = checkAndPrepare(config, options);
  try {
    return await build(start);
  } catch (error) {
    await start.closers
      .closeAll()
      .catch((err: unknown) => options.logger.warn({ err }, "closing after a failed start failed"));
    throw error;
  }
}

/** The checks that need nothing open: a bad signing secret or an unreadable TLS file fails start-up here, by name. */
function checkAndPrepare(config: Config, options: ControlPlaneOptions): Start {
  const clock = options.clock ?? Date.now;
  // A split deployment without a shared signing secret must not start.
  const signs = options.roles.includes("authz") || options.roles.includes("meter");
  const secrets = signs ? resolveSigningSecrets(config) : undefined;
  for (const role of ["authz", "meter"] as const)
    if (options.roles.includes(role)) serverCredentials(tlsFor(config, role));
  // Plaintext off loopback is refused unless tls.allow_plaintext says the network enforces mTLS.
  for (const exposed of checkPlaintextListeners(config, options.roles))
    options.logger.warn(
      { listener: exposed },
      "serving plaintext on a non-loopback address (tls.allow_plaintext): only Envoy must be able to reach it",
    );
  const metrics = options.metrics ?? createMetrics({ clock });
  return { config, options, clock, logger: options.logger, metrics, secrets, closers: createClosers() };
}

/**
 * The start order, which is the close order reversed: state (Redis, SQL, the admission lease), caches and their
 * pushed invalidation, the metrics listener, metering, authz, admin, and last the polls. So on close the polls stop,
 * admin and authz stop accepting and finish in-flight calls, the meter answers its streams and commits what is
 * queued, and only then do the stores close.
 */
async function build(start: Start): Promise<ControlPlane> {
  const { config, options, logger, metrics, closers } = start;
  const { rateLimiting, stores, lease } = await openState(start);
  const keyCache = createKeyCache({ source: stores.keys, clock: start.clock });
  const catalogue = await loadCatalogueView(stores.catalogue, config, options.mockProviders ?? false);
  subscribeKeyChanges(start, keyCache);
  const readiness = createReadiness(stores, rateLimiting, metrics);
  const metricsServer = config.metrics.listen
    ? await startMetricsListener(start, config.metrics.listen, readiness.ready)
    : undefined;
  const webhooks = startWebhooks(start, stores);
  const metering = await startMeteringRole(start, stores, rateLimiting, lease, webhooks);
  // Plans' monthly free credit: every process may sweep (a grant lands once per account and month).
  closers.add(
    "grant sweep",
    startGrantSweep({ grants: stores.grants, credits: metering.credits, clock: start.clock, logger }),
  );
  const authz = options.roles.includes("authz")
    ? await startAuthz(start, { keyCache, catalogue, rateLimiting, metering, ledger: stores.ledger })
    : undefined;
  // A process whose single-admission lease was taken over admits nothing more: Envoy and the orchestrator see it.
  lease?.whenLost(() => {
    readiness.drain();
    authz?.health.shutdown();
  });
  const keys = invalidatingKeys(stores.keys, keyCache);
  const parts = {
    stores,
    keyCache,
    keys,
    rateLimiting,
    metering,
    metrics,
    ready: readiness.ready,
    snapshot: catalogue.snapshot,
    reloadCatalogue: catalogue.reload,
  };
  let admin: RunningAdminServer | undefined;
  if (options.roles.includes("admin")) {
    admin = await startAdminRole(config, {
      ...parts,
      // The windows this process can read are the data plane's when they live in Redis or authz runs here.
      limitsLive: rateLimiting.backend === "redis" || options.roles.includes("authz"),
      credits: metering.credits,
      clock: start.clock,
      logger,
      webhooks,
    });
    closers.add("admin server", () => admin!.close());
  }
  startPolls(start, { stores, keyCache, catalogue });
  readiness.serving();
  let closing: Promise<void> | undefined;
  const drainAndClose = async () => {
    // Drain order: every health check says NOT_SERVING first (Envoy stops sending new work after its next health
    // check), then, after shutdown.drain_delay_ms, the closers run in reverse start order (see build).
    readiness.drain();
    authz?.health.shutdown();
    metering.server?.health.shutdown();
    if (config.shutdown.drain_delay_ms > 0) await sleep(config.shutdown.drain_delay_ms);
    await closers.closeAll();
  };
  return { ...parts, authz, admin, metricsServer, close: () => (closing ??= drainAndClose()) };
}

/** Rate limiting (and its Redis connection), the stores, and without Redis the single-admission lease. */
async function openState(start: Start): Promise<{ rateLimiting: RateLimiting; stores: Stores; lease?: Lease }> {
  const { config, options, logger, metrics, closers } = start;
  const rateLimiting = await startRateLimiting(config, logger);
  closers.add("rate limiting", () => rateLimiting.close());
  rateLimiting.redis?.on("error", () => metrics.redisError("admission"));
  // Key mutations made through this process (the admin API) reach every replica's cache at once: over Redis pub/sub
  // with Redis, else over PostgreSQL NOTIFY; the embedded SQLite default has one process, whose cache drops at once.
  const unpublished = (err: unknown) =>
    logger.warn({ err }, "key change not published; replicas will see it at their next poll");
  const events = rateLimiting.redis
    ? createRedisKeyEvents({ redis: rateLimiting.redis, prefix: config.redis.prefix, onError: unpublished })
    : usesPgKeyEvents(config)
      ? createPgKeyEvents({
          knex: () => stores.db.knex,
          channel: pgKeyEventsChannel(options.schema),
          onError: unpublished,
        })
      : undefined;
  const stores = await openStores(config, {
    schema: options.schema,
    clock: start.clock,
    events,
    wrapLedger: options.wrapLedger,
  });
  closers.add("database", () => stores.db.close());
  // Without Redis, one authz process per database (its reservations live in its memory): a second one refuses.
  const lease = await takeAdmissionLease(config, options.roles, stores.db, logger);
  if (lease) closers.add("admission lease", () => lease.release().catch(() => undefined));
  return { rateLimiting, stores, lease };
}

/** Readiness: not before every part started, never while draining; else the store answers and Redis is connected. */
function createReadiness(stores: Stores, rateLimiting: RateLimiting, metrics: Metrics) {
  let state: "starting" | "serving" | "draining" = "starting";
  return {
    serving: () => void (state = "serving"),
    drain: () => void (state = "draining"),
    async ready(): Promise<boolean> {
      if (state !== "serving") return false;
      try {
        await stores.db.knex.raw("select 1");
      } catch {
        metrics.sqlError("readiness");
        return false;
      }
      // With Redis configured, decisions need it (fail closed): not ready while the hot-path connection is down.
      return !rateLimiting.redis || rateLimiting.redis.status === "ready";
    },
  };
}

/** The standalone /metrics, /healthz and /readyz listener (metrics.listen). */
async function startMetricsListener(
  start: Start,
  listen: string,
  ready: () => Promise<boolean>,
): Promise<RunningMetricsServer> {
  const server = await startMetricsServer(listen, start.metrics, ready);
  start.closers.add("metrics server", () => server.close());
  start.logger.info({ address: listen, port: server.port }, "metrics listening");
  return server;
}

/** The credit gate, the meter and (meter role) the StreamAccessLogs server, watched by the metrics. */
async function startMeteringRole(
  start: Start,
  stores: Stores,
  rateLimiting: RateLimiting,
  lease?: Lease,
  webhooks?: WebhookDispatcher,
): Promise<Metering> {
  const { config, options, metrics, logger } = start;
  const metering = await startMetering(config, {
    ledger: metrics.observeLedger(stores.ledger, logger),
    roles: options.roles,
    logger,
    clock: start.clock,
    pollMs: config.keys.poll_interval_ms,
    redis: rateLimiting.redis,
    limiter: rateLimiting.limiter,
    schema: options.schema,
    db: stores.db,
    onDataLoss: metrics.creditDataLoss,
    verifier: start.secrets && createDecisionVerifier(start.secrets.secret, start.secrets.previous),
    lease,
    // The meter only hands over which balances moved; the alert is decided and written off its commit path.
    listeners: webhooks ? [createLowBalanceListener(webhooks)] : [],
  });
  start.closers.add("metering", () => metering.close());
  metrics.watchMeter(metering.meter);
  const openReservations = metering.credits.openReservations?.bind(metering.credits);
  if (openReservations) metrics.watchReservations(openReservations);
  return metering;
}

/**
 * The webhook delivery worker, in processes with the admin or meter role (never authz alone: deliveries stay off
 * the Check path). Closed before the stores, after the meter that pokes it.
 */
function startWebhooks(start: Start, stores: Stores): WebhookDispatcher | undefined {
  const { config, options, logger, closers } = start;
  if (!options.roles.includes("admin") && !options.roles.includes("meter")) return undefined;
  const w = config.webhooks;
  const dispatcher = startWebhookDispatcher({
    store: stores.webhooks,
    sender: createWebhookSender({
      policy: createTargetPolicy({ allowedPrivateNetworks: w.allowed_private_networks }),
      timeoutMs: w.timeout_ms,
    }),
    logger,
    clock: start.clock,
    pollMs: w.poll_interval_ms,
    timeoutMs: w.timeout_ms,
    concurrency: w.concurrency,
    perAccount: w.max_in_flight_per_account,
    maxPendingPerWebhook: w.max_pending_per_webhook,
    maxPendingAgeMs: w.max_pending_age_ms,
    retry: { baseMs: w.retry_base_ms, maxMs: w.retry_max_ms, maxAttempts: w.max_attempts },
    onAttempt: start.metrics.webhookAttempt,
    onDropped: start.metrics.webhookDropped,
  });
  closers.add("webhook deliveries", () => dispatcher.close());
  return dispatcher;
}

/** What admission decides with: the key cache, the catalogue, and one quota step (limits, then credit). */
interface AuthzParts {
  keyCache: KeyCache;
  catalogue: CatalogueView;
  rateLimiting: RateLimiting;
  metering: Metering;
  /** GET /v1/key reads the account's balance here (the figure `tollgate credits balance` shows). */
  ledger: Pick<LedgerStore, "balance">;
}

/** The authz role: admission wired to the caches and the quota, served as Envoy's ext_authz Check. */
async function startAuthz(start: Start, parts: AuthzParts): Promise<RunningGrpcServer> {
  const { config, logger, metrics } = start;
  const { rateLimiting, metering, catalogue } = parts;
  // Before it listens: no Check pays the token estimate's one-time set-up.
  warmUpTokenEstimate();
  // With Redis, one script decides a Check's rate limit and credit reservation (one command, one round trip).
  const quota =
    rateLimiting.redis && metering.redisCredits
      ? createRedisQuota({ redis: rateLimiting.redis, prefix: config.redis.prefix, credits: metering.redisCredits })
      : holdInTurn(rateLimiting.limiter, metering.credits, (accountId, decisionId) =>
          releaseReservations(metering.credits, accountId, [decisionId]),
        );
  // Large chat bodies are read on worker threads, so a small Check never waits behind one.
  const chats = createChatReaderPool({
    onFault: (error) => logger.warn({ err: error }, "chat reader worker died; its body is read again"),
  });
  start.closers.add("chat readers", () => chats.close());
  const policed = withFailurePolicy(quota, {
    failOpen: rateLimiting.backend === "redis" && config.redis.fail_open,
    logger,
    onRefused: metrics.creditRefused,
    // Past the reservation TTL a hold has expired into a charge (or been released): retrying longer changes nothing.
    releases: { giveUpAfterMs: config.meter.reservation_ttl_ms },
  });
  start.closers.add("hold releases", () => policed.close());
  const admission: AdmissionDeps = {
    chats,
    snapshot: catalogue.snapshot,
    keys: parts.keyCache,
    routable: (provider) => catalogue.routes().has(provider),
    quota: policed,
    now: start.clock,
    newDecisionId: randomUUID,
    keyStatus: {
      // GET /v1/key reads the balance (SQL) and the key's windows outside the key's rate limits: per key, at most 10
      // reads at once and 2 a second after that.
      throttle: createTokenBuckets({ perSecond: 2, burst: 10, maxIds: 100_000 }),
      windows: (request) => rateLimiting.limiter.peek(request),
      balance: async (accountId) => (await parts.ledger.balance(accountId)).balance,
      budgets: ({ key, account }, now) => keyBudgetStatus(parts.metering.credits, key, account, now),
    },
  };
  const signer = createDecisionSigner(start.secrets!.secret);
  const authz = await startGrpcServer(
    config.authz.listen,
    [
      authorizationService({
        admission,
        providers: catalogue.routes,
        logger,
        onDecision: metrics.observeCheck,
        signer,
      }),
    ],
    { tls: tlsFor(config, "authz") },
  );
  start.closers.add("authz server", () => authz.close());
  logger.info({ address: config.authz.listen, port: authz.port }, "authz listening");
  return authz;
}

/** Key revocation and rotation that also drop the key from this process's cache at once. */
function invalidatingKeys(keys: KeyStore, keyCache: KeyCache): Pick<KeyStore, "revoke" | "rotate"> {
  return {
    async revoke(id) {
      const key = await keys.revoke(id);
      keyCache.invalidateKey(id);
      return key;
    },
    async rotate(id, graceMs) {
      const issued = await keys.rotate(id, graceMs);
      keyCache.invalidateKey(id);
      return issued;
    },
  };
}

/**
 * The key-cache poll (the safety net under pushed invalidation) and the catalogue poll, which also writes the keys'
 * last-used times. Started last, so on close they stop first.
 */
function startPolls(start: Start, parts: { stores: Stores; keyCache: KeyCache; catalogue: CatalogueView }): void {
  const { config, logger, metrics, closers } = start;
  const { stores, keyCache, catalogue } = parts;
  const catalogueTimer = setInterval(async () => {
    try {
      if (await catalogue.reloadIfChanged()) logger.info("catalogue reloaded");
      const used = keyCache.drainLastUsed();
      if (used.size > 0) await stores.keys.touch(used);
    } catch (error) {
      metrics.sqlError("catalogue");
      logger.warn({ err: error }, "catalogue poll failed; serving the last snapshot");
    }
  }, config.keys.poll_interval_ms);
  catalogueTimer.unref();
  closers.add("catalogue poll", () => clearInterval(catalogueTimer));
  const stopPolling = keyCache.startPolling(config.keys.poll_interval_ms, (error) => {
    metrics.sqlError("key_cache");
    logger.warn({ err: error }, "key cache poll failed; serving from cache");
  });
  closers.add("key cache poll", stopPolling);
}

/** PostgreSQL without Redis: key changes travel over LISTEN/NOTIFY. */
function usesPgKeyEvents(config: Config): boolean {
  return !config.redis.url && !config.database.url.startsWith("sqlite:");
}

/**
 * Subscribes the key cache to pushed key changes (Redis pub/sub, or PostgreSQL LISTEN without Redis), if any:
 * revocation on any replica reaches this cache in milliseconds. The poll stays on regardless, as the safety net for
 * anything sent while disconnected.
 */
function subscribeKeyChanges(start: Start, keyCache: KeyCache): void {
  const { config, logger, metrics } = start;
  const onChange = (change: KeyChange) => {
    if (change.keyId) keyCache.invalidateKey(change.keyId);
    if (change.accountId) keyCache.invalidateAccount(change.accountId);
  };
  const pollNow = () =>
    void keyCache.poll().catch((err) => logger.warn({ err }, "key cache poll after resubscribe failed"));
  const source = config.redis.url ? "redis" : "postgres";
  const log = throttled(10_000, (suppressed, err) =>
    logger.warn({ err, suppressed }, `${source} key-change subscriber connection error`),
  );
  const onError = (err: unknown) => {
    if (source === "redis") metrics.redisError("key_events");
    else metrics.sqlError("key_cache");
    log(err);
  };
  const subscription = config.redis.url
    ? subscribeKeyEvents({
        subscriber: createRedisClient(config.redis.url, { failFast: false, onError }),
        prefix: config.redis.prefix,
        onChange,
        onResubscribed: pollNow,
        onError,
      })
    : usesPgKeyEvents(config)
      ? subscribePgKeyEvents({
          url: config.database.url,
          channel: pgKeyEventsChannel(start.options.schema),
          onChange,
          onReconnected: pollNow,
          onError,
        })
      : undefined;
  if (subscription) start.closers.add("key-change subscription", () => subscription.close());
}
