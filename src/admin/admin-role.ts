import type { Stores } from "../app/stores.js";
import type { KeyCache } from "../adapters/memory/key-cache.js";
import type { KeyStore } from "../adapters/sql/key-store.js";
import type { Config } from "../config/config.js";
import type { CreditReservations } from "../domain/credits.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../observability/metrics.js";
import { bearerAuthentication } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { startAdminServer, type RunningAdminServer } from "./admin-server.js";
import { createAdminTokenStore } from "./tokens.js";

/** The parts of a running control plane the admin role is built from. */
export interface AdminRoleParts {
  stores: Stores;
  keyCache: KeyCache;
  keys: Pick<KeyStore, "revoke" | "rotate">;
  credits: CreditReservations;
  reloadCatalogue(): Promise<void>;
  clock: () => number;
  logger: Logger;
  /** Served on /metrics when present. */
  metrics?: Metrics;
  /** /readyz; defaults to "the store answers". */
  ready?: () => Promise<boolean>;
}

/** Wires the admin services to the control plane's stores, caches and credit gate, and listens on admin.listen. */
export async function startAdminRole(config: Config, parts: AdminRoleParts): Promise<RunningAdminServer> {
  const tokens = createAdminTokenStore(parts.stores.db, parts.clock);
  const deps: AdminDeps = {
    stores: parts.stores,
    authenticate: bearerAuthentication(tokens.verify),
    keyMutations: parts.keys,
    invalidate: ({ keyId, accountId }) => {
      if (keyId) parts.keyCache.invalidateKey(keyId);
      if (accountId) parts.keyCache.invalidateAccount(accountId);
    },
    balanceCommitted: (change) => parts.credits.committed([change]),
    reloadCatalogue: parts.reloadCatalogue,
    platformFeeBps: config.credits.platform_fee_bps,
    clock: parts.clock,
    logger: parts.logger,
  };
  const ready =
    parts.ready ??
    (async () => {
      await parts.stores.db.knex.raw("select 1");
      return true;
    });
  const server = await startAdminServer(config.admin.listen, deps, ready, parts.metrics);
  parts.logger.info({ address: config.admin.listen, port: server.port }, "admin listening");
  return server;
}
