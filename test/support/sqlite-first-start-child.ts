/**
 * A process starting on a SQLite file as every role does (openStores: open, migrate, seed the catalogue), for
 * test/integration/sqlite-first-start-two-processes.test.ts. argv: the database file, then the epoch ms to start at
 * (so that two children start together). Prints "ok", or "failed: <message>" and exits 1.
 */
import { openStores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";

const [file, startAt] = process.argv.slice(2) as [string, string];
const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: `sqlite:${file}` } });
while (Date.now() < Number(startAt)) await new Promise((resolve) => setTimeout(resolve, 1));
try {
  const stores = await openStores(config);
  await stores.db.close();
  console.log("ok");
} catch (error) {
  console.log(`failed: ${(error as Error).message.split("\n")[0]}`);
  process.exitCode = 1;
}
