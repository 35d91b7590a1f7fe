import { createAdminOperations } from "../app/admin-operations.js";
import type { LimitWindows } from "../app/key-limits.js";
import { createPageTokens } from "../app/page-tokens.js";
import { createWriteLimiter } from "../app/write-limit.js";
import type { Stores } from "../app/stores.js";
import type { Config } from "../config/config.js";
import { createTargetPolicy } from "../domain/webhook-targets.js";
import type { CreditReservations } from "../domain/credits.js";
import type { Logger } from "../logging.js";
import type { Metrics } from "../observability/metrics.js";
import { bearerAuthentication } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { startAdminServer, type RunningAdminServer } from "./admin-server.js";

/** The parts of a running control plane the admin role is built from. */
export interface AdminRoleParts {
  stores: Stores;
  /** This process's key cache: dropped entries are re-read on their next Check. */
  keyCache: { invalidateKey(keyId: string): void; invalidateAccount(accountId: string): void };
  credits: CreditReservations;
  reloadCatalogue(): Promise<void>;
  clock: () => number;
  logger: Logger;
  /** Served on /metrics when present. */
  metrics?: Metrics;
  /** /readyz; defaults to "the store answers". */
  ready?: () => Promise<boolean>;
  /** This process's rate limiter, read for a key's limits now (KeyService/GetKeyLimits); `live` as LimitWindows says. */
  rateLimiting?: { limiter: Pick<LimitWindows, "peek"> };
  limitsLive?: boolean;
  /** The webhook worker: told when a top-up moves a balance (balance.low re-arms). */
  webhooks?: { balancesChanged(accountIds: Iterable<string>): void };
}

/** Wires the admin use cases to the control plane's stores, caches and credit gate, and listens on admin.listen. */
export async function startAdminRole(config: Config, parts: AdminRoleParts): Promise<RunningAdminServer> {
  const { stores, keyCache } = parts;
  const ops = createAdminOperations({
    store: stores.admin,
    pageTokens: createPageTokens(() => stores.admin.secret("page_token_secret")),
    platformFeeBps: config.credits.platform_fee_bps,
    credits: parts.credits,
    limitWindows: parts.rateLimiting && {
      peek: (request) => parts.rateLimiting!.limiter.peek(request),
      live: parts.limitsLive ?? false,
    },
    clock: parts.clock,
    logger: parts.logger,
    webhookTargets: createTargetPolicy({ allowedPrivateNetworks: config.webhooks.allowed_private_networks }),
    writes: createWriteLimiter({
      perSecond: config.admin.account_writes_per_second,
      burst: config.admin.account_write_burst,
      clock: parts.clock,
    }),
    events: {
      async keyChanged(keyId) {
        keyCache.invalidateKey(keyId);
        await stores.events?.publish({ keyId });
      },
      async accountChanged(accountId) {
        keyCache.invalidateAccount(accountId);
        await stores.events?.publish({ accountId });
      },
      async balanceCommitted(change) {
        parts.webhooks?.balancesChanged([change.accountId]);
        await parts.credits.committed([change]);
      },
      catalogueChanged: parts.reloadCatalogue,
    },
    consoleSessionTtlMs: config.admin.console_session_ttl_ms,
  });
  const deps: AdminDeps = {
    ops,
    authenticate: bearerAuthentication(
      ops.tokens.verify,
      parts.logger,
      async (secret) => (await ops.sessions.verify(secret))?.principal,
    ),
    logger: parts.logger,
    requests: createWriteLimiter({
      perSecond: config.admin.account_requests_per_second,
      burst: config.admin.account_request_burst,
      clock: parts.clock,
      what: "requests",
    }),
  };
  const ready =
    parts.ready ??
    (async () => {
      await ops.ping();
      return true;
    });
  const server = await startAdminServer(config.admin, deps, ready, parts.metrics);
  parts.logger.info({ address: config.admin.listen, port: server.port }, "admin listening");
  return server;
}
