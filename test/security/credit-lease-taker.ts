/**
 * Test-only: another authz process, reduced to what matters here. It takes the single-admission lease on DATABASE_URL
 * (waiting out a holder that stopped heartbeating), prints "taken", and keeps heartbeating until SIGTERM.
 *
 *   node --import tsx test/security/credit-lease-taker.ts DATABASE_URL
 */
import { acquireLease } from "../../src/adapters/sql/coordination-store.js";
import { openDatabase } from "../../src/adapters/sql/database.js";

const db = await openDatabase(process.argv[2]!);
process.stdout.write("waiting\n");
const lease = await acquireLease(db, {
  name: "admission",
  holder: `taker:${process.pid}`,
  ttlMs: 6_000,
  onLost: () => process.stdout.write("lost\n"),
  refusal: (holder) => `held by ${holder}`,
});
process.stdout.write(`taken ${lease.predecessor ? "from a stalled holder" : "free"}\n`);
process.once(
  "SIGTERM",
  () =>
    void lease
      .release()
      .then(() => db.knex.destroy())
      .then(() => process.exit(0)),
);
