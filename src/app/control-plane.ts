import { randomUUID } from "node:crypto";
import { createKeyCache, type KeyCache } from "../adapters/memory/key-cache.js";
import type { KeyStore } from "../adapters/sql/key-store.js";
import { startMetering, type Metering } from "./metering.js";
import { openStores, type Stores } from "./stores.js";
import type { Config } from "../config/config.js";
import { holdInTurn, type AdmissionDeps } from "../domain/admission.js";
import type { CatalogueSnapshot } from "../domain/catalogue.js";
import { authorizationService } from "../dataplane/authz/authz-service.js";
import type { ProviderRoute } from "../dataplane/authz/check-response.js";
import { startGrpcServer, type RunningGrpcServer } from "../dataplane/grpc/grpc-server.js";
import type { Logger } from "../logging.js";
import { createRedisClient } from "../adapters/redis/client.js";
import { createRedisKeyEvents, subscribeKeyEvents, type KeyEventsSubscription } from "../adapters/redis/invalidation.js";
import { startRateLimiting, throttled, withFailurePolicy, type RateLimiting } from "./rate-limits.js";
import { createRedisQuota } from "../adapters/redis/quota.js";
import { startAdminRole } from "../admin/admin-role.js";
import type { RunningAdminServer } from "../admin/admin-server.js";
import { createMetrics, type Metrics } from "../observability/metrics.js";
import { startMetricsServer, type RunningMetricsServer } from "../observability/metrics-server.js";

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
  /** Whether this process can serve: the store answers, Redis (when configured) is connected, not draining. */
  ready(): Promise<boolean>;
  snapshot(): CatalogueSnapshot;
  /** Reloads catalogue and plans now (they also reload by polling). */
  reloadCatalogue(): Promise<void>;
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
}

/** Starts the requested roles on one set of stores. */
export async function startControlPlane(config: Config, options: ControlPlaneOptions): Promise<ControlPlane> {
  const clock = options.clock ?? Date.now;
  const { logger } = options;
  const metrics = options.metrics ?? createMetrics({ clock });
  const rateLimiting = await startRateLimiting(config, logger);
  rateLimiting.redis?.on("error", () => metrics.redisError("admission"));
  // With Redis, key mutations made through this process (the admin API) reach every replica's cache at once.
  const keyEvents = rateLimiting.redis
    ? createRedisKeyEvents({ redis: rateLimiting.redis, prefix: config.redis.prefix, onError: (err) => logger.warn({ err }, "key change not published; replicas will see it at their next poll") })
    : undefined;
  let stores: Stores;
  try {
    stores = await openStores(config, { schema: options.schema, clock, events: keyEvents });
  } catch (error) {
    await rateLimiting.close();
    throw error;
  }
  let snapshot: CatalogueSnapshot;
  let routes: Map<string, ProviderRoute>;
  const reloadCatalogue = async () => {
    snapshot = await stores.catalogue.snapshot();
    routes = providerRoutes(snapshot, config, options.mockProviders ?? false);
  };
  await reloadCatalogue();
  let catalogueVersion = await stores.catalogue.version();
  const keyCache = createKeyCache({ source: stores.keys, clock });

  // Redis pub/sub invalidation: revocation on any replica or the CLI reaches this cache in milliseconds. The poll
  // below stays on regardless, as the fallback for anything published while this subscriber was disconnected.
  let subscription: KeyEventsSubscription | undefined;
  if (config.redis.url) {
    const subscriberLog = throttled(10_000, (suppressed, err) => logger.warn({ err, suppressed }, "redis subscriber connection error"));
    const subscriberWarning = (err: unknown) => {
      metrics.redisError("key_events");
      subscriberLog(err);
    };
    subscription = subscribeKeyEvents({
      subscriber: createRedisClient(config.redis.url, { failFast: false, onError: subscriberWarning }),
      prefix: config.redis.prefix,
      onChange: (change) => {
        if (change.keyId) keyCache.invalidateKey(change.keyId);
        if (change.accountId) keyCache.invalidateAccount(change.accountId);
      },
      onResubscribed: () => void keyCache.poll().catch((err) => logger.warn({ err }, "key cache poll after resubscribe failed")),
      onError: subscriberWarning,
    });
  }
  const stopPolling = keyCache.startPolling(config.keys.poll_interval_ms, (error) => {
    metrics.sqlError("key_cache");
    logger.warn({ err: error }, "key cache poll failed; serving from cache");
  });
  const catalogueTimer = setInterval(async () => {
    try {
      const version = await stores.catalogue.version();
      if (version !== catalogueVersion) {
        catalogueVersion = version;
        await reloadCatalogue();
        logger.info("catalogue reloaded");
      }
      const used = keyCache.drainLastUsed();
      if (used.size > 0) await stores.keys.touch(used);
    } catch (error) {
      metrics.sqlError("catalogue");
      logger.warn({ err: error }, "catalogue poll failed; serving the last snapshot");
    }
  }, config.keys.poll_interval_ms);
  catalogueTimer.unref();

  const metering = await startMetering(config, {
    ledger: metrics.observeLedger(stores.ledger, logger),
    roles: options.roles,
    logger,
    clock,
    pollMs: config.keys.poll_interval_ms,
    redis: rateLimiting.redis,
    limiter: rateLimiting.limiter,
    schema: options.schema,
  });
  metrics.watchMeter(metering.meter);
  const openReservations = metering.credits.openReservations?.bind(metering.credits);
  if (openReservations) metrics.watchReservations(openReservations);
  // With Redis, one script decides a Check's rate limit and credit reservation (one command, one round trip).
  const quota = rateLimiting.redis && metering.redisCredits
    ? createRedisQuota({ redis: rateLimiting.redis, prefix: config.redis.prefix, credits: metering.redisCredits })
    : holdInTurn(rateLimiting.limiter, metering.credits);
  const admission: AdmissionDeps = {
    snapshot: () => snapshot,
    keys: keyCache,
    routable: (provider) => routes.has(provider),
    quota: withFailurePolicy(quota, { failOpen: rateLimiting.backend === "redis" && config.redis.fail_open, logger }),
    now: clock,
    newDecisionId: randomUUID,
  };

  let authz: RunningGrpcServer | undefined;
  if (options.roles.includes("authz")) {
    authz = await startGrpcServer(config.authz.listen, [
      authorizationService({ admission, providers: () => routes, logger, onDecision: metrics.observeCheck }),
    ]);
    logger.info({ address: config.authz.listen, port: authz.port }, "authz listening");
  }

  let draining = false;
  const ready = async () => {
    if (draining) return false;
    try {
      await stores.db.knex.raw("select 1");
    } catch {
      metrics.sqlError("readiness");
      return false;
    }
    // With Redis configured, decisions need it (fail closed): not ready while the hot-path connection is down.
    if (rateLimiting.redis && rateLimiting.redis.status !== "ready") return false;
    return true;
  };

  const plane: ControlPlane = {
    stores,
    keyCache,
    keys: {
      async revoke(id) {
        const key = await stores.keys.revoke(id);
        keyCache.invalidateKey(id);
        return key;
      },
      async rotate(id, graceMs) {
        const issued = await stores.keys.rotate(id, graceMs);
        keyCache.invalidateKey(id);
        return issued;
      },
    },
    authz,
    metering,
    metrics,
    ready,
    rateLimiting,
    snapshot: () => snapshot,
    reloadCatalogue,
    async close() {
      // Drain order: every health check says NOT_SERVING first (Envoy stops sending new work after its next health
      // check), then, after shutdown.drain_delay_ms, the servers stop accepting; in-flight Checks finish (grpc-js
      // tryShutdown), the meter answers its open streams, commits what is queued, and only then do stores close.
      draining = true;
      authz?.health.shutdown();
      metering.server?.health.shutdown();
      if (config.shutdown.drain_delay_ms > 0) await new Promise((resolve) => setTimeout(resolve, config.shutdown.drain_delay_ms));
      stopPolling();
      clearInterval(catalogueTimer);
      await plane.admin?.close();
      await authz?.close();
      await metering.close();
      await plane.metricsServer?.close();
      await subscription?.close();
      await rateLimiting.close();
      await stores.db.close();
    },
  };
  try {
    if (options.roles.includes("admin")) {
      plane.admin = await startAdminRole(config, { ...plane, credits: metering.credits, clock, logger });
    }
    if (config.metrics.listen) {
      plane.metricsServer = await startMetricsServer(config.metrics.listen, metrics, ready);
      logger.info({ address: config.metrics.listen, port: plane.metricsServer.port }, "metrics listening");
    }
  } catch (error) {
    await plane.close();
    throw error;
  }
  return plane;
}

/** Provider routes: catalogue base paths joined with configured credentials; a provider without one is not routable. */
function providerRoutes(snapshot: CatalogueSnapshot, config: Config, mock: boolean): Map<string, ProviderRoute> {
  const routes = new Map<string, ProviderRoute>();
  for (const provider of snapshot.providers.values()) {
    const key = config.providers[provider.id]?.api_key ?? (mock ? `mock-${provider.id}` : undefined);
    if (key) routes.set(provider.id, { basePath: provider.basePath, authorization: `Bearer ${key}` });
  }
  return routes;
}
