/**
 * A process that runs operator top-ups through the real use case and SQL store, for the SIGKILL drills in
 * test/integration/top-up-idempotency.test.ts. argv: url, schema ("" for none), account id, mode, then keys.
 * mode "pause": the store is wrapped (here, in the test, never in src) so the transaction stops right after the
 * top-up's statements, before its audit record and COMMIT; it prints "paused" and waits to be killed.
 * mode "run": top-ups one after another, printing "done KEY" after each commits (from TOPUP_START_AT, epoch ms, when
 * set, so that several children start together).
 */
import type { AdminRepository, AdminStore } from "../../src/domain/admin-store.js";
import { createAdminOperations } from "../../src/app/admin-operations.js";
import { createPageTokens } from "../../src/app/page-tokens.js";
import { createSqlAdminStore } from "../../src/adapters/sql/admin-store.js";
import { openDatabase } from "../../src/adapters/sql/database.js";

const [url, schema, accountId, mode, ...keys] = process.argv.slice(2) as [
  string,
  string,
  string,
  "pause" | "run",
  ...string[],
];
const db = await openDatabase(url, { schema: schema || undefined });
const real = createSqlAdminStore(db);

/** Holds the transaction open after its top-up statements: the kill lands between them and COMMIT. */
function pausing(store: AdminStore): AdminStore {
  return {
    ...store,
    transaction: (fn) =>
      store.transaction((tx) => {
        const held: AdminRepository = {
          ...tx,
          async topUp(input) {
            const outcome = await tx.topUp(input);
            process.stdout.write("paused\n");
            await new Promise(() => {});
            return outcome;
          },
        };
        return fn(held);
      }),
  };
}

const ops = createAdminOperations({
  store: mode === "pause" ? pausing(real) : real,
  pageTokens: createPageTokens(async () => Buffer.alloc(32)),
  platformFeeBps: 2500,
  clock: Date.now,
  events: {
    keyChanged: async () => {},
    accountChanged: async () => {},
    balanceCommitted: async () => {},
    catalogueChanged: async () => {},
  },
});
const operator = { kind: "operator" as const, tokenId: "drill" };
const startAt = Number(process.env.TOPUP_START_AT ?? 0);
if (startAt > Date.now()) await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));
for (const key of keys) {
  await ops.credits.topUp(operator, { accountId, amount: 1_000_000_000n, idempotencyKey: key });
  process.stdout.write(`done ${key}\n`);
}
await db.close();
