import { randomUUID } from "node:crypto";
import { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { createKeyCache, type KeyCache } from "../adapters/memory/key-cache.js";
import { createAccountStore, type AccountStore } from "../adapters/sql/account-store.js";
import { createCatalogueStore, type CatalogueStore } from "../adapters/sql/catalogue-store.js";
import { migrate, openDatabase, type Database } from "../adapters/sql/database.js";
import { createKeyStore, type KeyStore } from "../adapters/sql/key-store.js";
import { readCatalogueFile } from "../config/catalogue-file.js";
import type { Config } from "../config/config.js";
import type { AdmissionDeps } from "../domain/admission.js";
import type { CatalogueSnapshot } from "../domain/catalogue.js";
import { authorizationImplementation } from "../dataplane/authz/authz-service.js";
import type { ProviderRoute } from "../dataplane/authz/check-response.js";
import { startGrpcServer, type RunningGrpcServer } from "../dataplane/grpc/grpc-server.js";
import type { Logger } from "../logging.js";

/** The stores every role and the CLI share. */
export interface Stores {
  db: Database;
  accounts: AccountStore;
  keys: KeyStore;
  catalogue: CatalogueStore;
}

/** Opens the database, migrates it and loads the default catalogue on first start. */
export async function openStores(config: Config, options: { schema?: string; clock?: () => number } = {}): Promise<Stores> {
  const db = await openDatabase(config.database.url, { schema: options.schema });
  try {
    await migrate(db);
    const catalogue = createCatalogueStore(db, options.clock);
    await catalogue.seed(readCatalogueFile(config.catalogue.file));
    return { db, catalogue, accounts: createAccountStore(db, options.clock), keys: createKeyStore(db, options.clock) };
  } catch (error) {
    await db.close();
    throw error;
  }
}

/** Which roles a process runs. */
export type Role = "authz" | "meter" | "admin";

/** A running control plane; `close` drains and stops it. */
export interface ControlPlane {
  stores: Stores;
  keyCache: KeyCache;
  /** Key mutations that also invalidate this process's cache at once (the admin API and tests go through here). */
  keys: Pick<KeyStore, "revoke" | "rotate">;
  authz?: RunningGrpcServer;
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
}

/** Starts the requested roles on one set of stores. */
export async function startControlPlane(config: Config, options: ControlPlaneOptions): Promise<ControlPlane> {
  const clock = options.clock ?? Date.now;
  const stores = await openStores(config, { schema: options.schema, clock });
  const { logger } = options;
  let snapshot = await stores.catalogue.snapshot();
  let catalogueVersion = await stores.catalogue.version();
  let routes = providerRoutes(snapshot, config, options.mockProviders ?? false);
  const keyCache = createKeyCache({ source: stores.keys, clock });

  const reloadCatalogue = async () => {
    snapshot = await stores.catalogue.snapshot();
    routes = providerRoutes(snapshot, config, options.mockProviders ?? false);
  };
  const stopPolling = keyCache.startPolling(config.keys.poll_interval_ms, (error) =>
    logger.warn({ err: error }, "key cache poll failed; serving from cache"),
  );
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
      logger.warn({ err: error }, "catalogue poll failed; serving the last snapshot");
    }
  }, config.keys.poll_interval_ms);
  catalogueTimer.unref();

  const admission: AdmissionDeps = {
    snapshot: () => snapshot,
    keys: keyCache,
    routable: (provider) => routes.has(provider),
    now: clock,
    newDecisionId: randomUUID,
  };

  let authz: RunningGrpcServer | undefined;
  if (options.roles.includes("authz")) {
    authz = await startGrpcServer(config.authz.listen, [
      { service: Authorization, implementation: authorizationImplementation({ admission, providers: () => routes, logger }) },
    ]);
    logger.info({ address: config.authz.listen, port: authz.port }, "authz listening");
  }

  return {
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
    snapshot: () => snapshot,
    reloadCatalogue,
    async close() {
      stopPolling();
      clearInterval(catalogueTimer);
      await authz?.close();
      await stores.db.close();
    },
  };
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
