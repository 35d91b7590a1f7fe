import { spawn } from "node:child_process";
import type { Knex } from "knex";
import { createLedgerStore } from "../../src/adapters/sql/ledger-store.js";
import type { Database } from "../../src/app/stores.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import type { LedgerStore } from "../../src/domain/ports.js";
import type { MeterProcess } from "./cli.js";

/** What the paused meter writes to stderr once a commit's writes are done and it waits before COMMIT. */
export const pausedLine = (ms: number) => `paused ${ms} ms inside a ledger commit`;

/** The same database, but every transaction waits `ms` after its work and before COMMIT, saying so on stderr. */
function pausingBeforeCommit(db: Database, ms: number): Database {
  const knex = new Proxy(db.knex, {
    get(target, property, receiver) {
      if (property !== "transaction") return Reflect.get(target, property, receiver);
      return (work: (trx: Knex.Transaction) => Promise<unknown>, config?: Knex.TransactionConfig) =>
        target.transaction(async (trx) => {
          const result = await work(trx);
          // The drill waits for this line, then SIGKILLs the process while the transaction is still open.
          process.stderr.write(`test ledger: ${pausedLine(ms)}\n`);
          await new Promise((resolve) => setTimeout(resolve, ms));
          return result;
        }, config);
    },
  });
  return { ...db, knex };
}

/**
 * Wraps a ledger store so that every settlement (commit) pauses inside its transaction, after its writes and
 * before COMMIT; every other call is the store's own. For the composition root's wrapLedger option.
 */
export function pauseInsideCommits(ledger: LedgerStore, db: Database, ms: number): LedgerStore {
  const pausing = createLedgerStore(pausingBeforeCommit(db, ms));
  return { ...ledger, commit: (batch) => pausing.commit(batch) };
}

/**
 * Starts test/support/serve-with-paused-ledger.ts (the meter role with pauseInsideCommits) on 127.0.0.1:`port`,
 * as its own node process so a SIGKILL hits it, and resolves once it listens.
 */
export async function startPausedMeterProcess(
  port: number,
  env: Record<string, string>,
  pauseMs: number,
): Promise<MeterProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "test/support/serve-with-paused-ledger.ts", String(pauseMs)],
    {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, ...env, TOLLGATE_METER_LISTEN: `127.0.0.1:${port}` },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("meter (Envoy access log gRPC) on")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`paused meter exited (${code}) before listening: ${out}${err}`)));
  });
  return { child, address: `127.0.0.1:${port}`, stderr: () => err, exited };
}
