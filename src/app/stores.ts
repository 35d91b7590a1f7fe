import { createAccountStore, type AccountStore } from "../adapters/sql/account-store.js";
import { createSqlAdminStore } from "../adapters/sql/admin-store.js";
import { createCatalogueStore, type CatalogueStore } from "../adapters/sql/catalogue-store.js";
import { migrate, openDatabase, type Database } from "../adapters/sql/database.js";
import { createKeyStore, type KeyStore } from "../adapters/sql/key-store.js";
import { readCatalogueFile } from "../config/catalogue-file.js";
import type { Config } from "../config/config.js";
import type { AdminStore, AdminTokenRecord, Principal } from "../domain/admin-store.js";
import { NotFoundError } from "../domain/errors.js";
import type { KeyEvents } from "../domain/key-events.js";
import { createGrantStore, type GrantStore } from "../adapters/sql/grant-store.js";
import { createLedgerStore, type LedgerStore } from "../adapters/sql/ledger-store.js";
import { createSqlWebhookDeliveryStore } from "../adapters/sql/webhook-store.js";
import type { WebhookDeliveryStore } from "../domain/webhooks.js";
import { newAdminToken, verifyAdminToken } from "./admin-tokens.js";

/** The stores every role and the CLI share. */
export interface Stores {
  db: Database;
  accounts: AccountStore;
  keys: KeyStore;
  catalogue: CatalogueStore;
  ledger: LedgerStore;
  /** Plans' free credit: the monthly grants that are due. */
  grants: GrantStore;
  /** Every admin read and write, behind the domain's port. */
  admin: AdminStore;
  /** Where key and account changes are published to other replicas (Redis or PostgreSQL), when configured. */
  events?: KeyEvents;
  /** The webhook outbox as the delivery worker and the meter's after-commit side see it. */
  webhooks: WebhookDeliveryStore;
}

/** Options for opening the stores. */
export interface OpenStoresOptions {
  schema?: string;
  clock?: () => number;
  events?: KeyEvents;
  /** Replaces the ledger store with a wrapper of it (failure drills pause inside a commit this way). */
  wrapLedger?: (ledger: LedgerStore, db: Database) => LedgerStore;
}

/** Opens the database, migrates it and loads the default catalogue on first start. */
export async function openStores(config: Config, options: OpenStoresOptions = {}): Promise<Stores> {
  const db = await openDatabase(config.database.url, { schema: options.schema });
  try {
    await migrate(db);
    const catalogue = createCatalogueStore(db, options.clock);
    await catalogue.seed(readCatalogueFile(config.catalogue.file));
    const ledger = createLedgerStore(db);
    return {
      db,
      catalogue,
      accounts: createAccountStore(db, options.clock),
      keys: createKeyStore(db, options.clock, options.events),
      ledger: options.wrapLedger ? options.wrapLedger(ledger, db) : ledger,
      grants: createGrantStore(db),
      admin: createSqlAdminStore(db),
      webhooks: createSqlWebhookDeliveryStore(db),
      events: options.events,
    };
  } catch (error) {
    await db.close();
    throw error;
  }
}

/** Admin tokens straight on the database: the bootstrap path (the first operator token, the local credential). */
export interface AdminTokenStore {
  create(
    input: { kind: "operator" } | { kind: "account"; accountId: string },
    name?: string,
  ): Promise<{ token: AdminTokenRecord; secret: string }>;
  list(): Promise<AdminTokenRecord[]>;
  revoke(id: string): Promise<AdminTokenRecord>;
  /** The principal a presented token stands for, or undefined when it is unknown, revoked or malformed. */
  verify(presented: string): Promise<Principal | undefined>;
  /** Whether an unrevoked operator token exists (false on a database not migrated yet): bootstrap needs none. */
  hasOperator(): Promise<boolean>;
}

/** Creates the bootstrap admin-token store over an open database (the caller audits what it does with it). */
export function createAdminTokenStore(db: Database, clock: () => number = Date.now): AdminTokenStore {
  const store = createSqlAdminStore(db);
  return {
    async create(input, name = "") {
      if (input.kind === "account" && !(await store.account(input.accountId)))
        throw new NotFoundError(`account "${input.accountId}" does not exist`);
      const { token, secret, tokenHash } = newAdminToken(input, name, clock());
      await store.insertAdminToken({ ...token, tokenHash });
      return { token, secret };
    },
    list: () => store.adminTokens(),
    async revoke(id) {
      const token = await store.revokeAdminToken(id, clock());
      if (!token) throw new NotFoundError(`admin token "${id}" does not exist`);
      return token;
    },
    verify: (presented) => verifyAdminToken(store, presented),
    hasOperator: () => store.hasOperatorToken(),
  };
}

/** The database primitives the CLI's bootstrap path needs (open, migrate), wired here so the CLI imports no adapter. */
export { migrate, openDatabase, type Database } from "../adapters/sql/database.js";

/**
 * Records a change made straight on the database (bootstrap: no admin API yet, or the admin API's own credential)
 * in the same audit log the admin API writes, naming its actor.
 */
export async function auditDirect(
  db: Database,
  actor: string,
  method: string,
  targets: Record<string, string>,
  clock: () => number = Date.now,
): Promise<void> {
  await createSqlAdminStore(db).insertAudit({ tokenId: actor, method, targets, time: clock() });
}
