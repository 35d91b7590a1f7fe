import { createAccountStore, type AccountStore } from "../adapters/sql/account-store.js";
import { createCatalogueStore, type CatalogueStore } from "../adapters/sql/catalogue-store.js";
import { migrate, openDatabase, type Database } from "../adapters/sql/database.js";
import { createKeyStore, type KeyStore } from "../adapters/sql/key-store.js";
import { readCatalogueFile } from "../config/catalogue-file.js";
import type { Config } from "../config/config.js";
import type { KeyEvents } from "../domain/key-events.js";
import { createLedgerStore, type LedgerStore, type LedgerTestHooks } from "../adapters/sql/ledger-store.js";

/** The stores every role and the CLI share. */
export interface Stores {
  db: Database;
  accounts: AccountStore;
  keys: KeyStore;
  catalogue: CatalogueStore;
  ledger: LedgerStore;
}

/**
 * TOLLGATE_TEST_PAUSE_IN_COMMIT_MS (test-only, for the SIGKILL failure drill in test/integration): pause inside every
 * ledger settlement transaction so a kill lands mid-commit. Read here, once, not in the store.
 */
function ledgerTestHooks(): LedgerTestHooks {
  const ms = Number(process.env.TOLLGATE_TEST_PAUSE_IN_COMMIT_MS ?? "");
  return Number.isSafeInteger(ms) && ms > 0 ? { pauseInCommitMs: ms } : {};
}

/** Opens the database, migrates it and loads the default catalogue on first start. */
export async function openStores(config: Config, options: { schema?: string; clock?: () => number; events?: KeyEvents } = {}): Promise<Stores> {
  const db = await openDatabase(config.database.url, { schema: options.schema });
  try {
    await migrate(db);
    const catalogue = createCatalogueStore(db, options.clock);
    await catalogue.seed(readCatalogueFile(config.catalogue.file));
    return { db, catalogue, accounts: createAccountStore(db, options.clock), keys: createKeyStore(db, options.clock, options.events), ledger: createLedgerStore(db, ledgerTestHooks()) };
  } catch (error) {
    await db.close();
    throw error;
  }
}
