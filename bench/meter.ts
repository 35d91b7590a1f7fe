// bench/meter: access-log entries per second from a separate ALS client process into the durable ledger.
//
//   npx tsx bench/meter.ts [--entries 50000] [--streams 8] [--batch 100] [--batch-max 2000] [--postgres URL] [--only sqlite|postgres] [--trace]
//
// For each store (a fresh SQLite file; PostgreSQL in a fresh schema when --postgres or TOLLGATE_BENCH_DATABASE_URL
// is given, default postgres://postgres@127.0.0.1:5432/test when reachable) it starts the meter role in this
// process, forks a client process that streams HTTPAccessLogEntry batches over several StreamAccessLogs streams
// (plus 10% duplicate deliveries; group commits of up to --batch-max events, default 2000), and times from the client's
// first send until every entry is committed. The client encodes its messages before the clock starts (Envoy's encoding
// cost is Envoy's, on its own machine; here it would take CPU from the meter and PostgreSQL on the same 2 cores). Then it
// checks exactly-once: one usage_debit per decision, and every balance equal to top-up minus the expected costs.
// --trace also prints, per store, the statements the timed part sent (round trips per group commit) and the time spent
// waiting for each kind of statement.
import { fork, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Writable } from "node:stream";
import knexFactory from "knex";
import { startControlPlane } from "../src/app/control-plane.js";
import { loadConfig } from "../src/config/config.js";
import { createLogger } from "../src/logging.js";
import { nanos, picoPerToken, requestCost } from "../src/domain/money.js";
import { alsEntry, connectAls, encodeBatch, TEST_SIGNING_SECRET } from "../test/support/als-client.js";

const PRICES = { input: 2_500_000n, cachedInput: 1_250_000n, output: 10_000_000n };
const ACCOUNTS = 50;
const TOP_UP = 1_000_000_000_000n;

function costOf(i: number): bigint {
  return requestCost(
    { promptTokens: 200 + (i % 1000), cachedTokens: i % 100, completionTokens: 50 + (i % 500) },
    {
      input: picoPerToken(PRICES.input),
      cachedInput: picoPerToken(PRICES.cachedInput),
      output: picoPerToken(PRICES.output),
    },
  );
}

async function client(
  address: string,
  accounts: string[],
  entries: number,
  streams: number,
  batch: number,
): Promise<void> {
  const ids = Array.from({ length: entries }, () => randomUUID());
  const built = ids.map((decisionId, i) =>
    alsEntry({
      decisionId,
      accountId: accounts[i % accounts.length]!,
      prices: PRICES,
      usage: { prompt: 200 + (i % 1000), cached: i % 100, completion: 50 + (i % 500) },
    }),
  );
  // Encoded before the clock starts: in production Envoy encodes, on its own machine, so that CPU is not the meter's.
  const batches: Uint8Array[] = [];
  for (let i = 0; i < built.length; i += batch) batches.push(encodeBatch(built.slice(i, i + batch)));
  const als = connectAls(address);
  const open = Array.from({ length: streams }, () => als.open());
  // Envoy holds its streams open for hours: connect and identify first, then start the clock.
  for (const o of open) o.send([]);
  await als.ready();
  process.send!({ started: Date.now() });
  let s = 0;
  for (const [n, message] of batches.entries()) {
    open[s++ % streams]!.sendEncoded(message);
    // 10% duplicates on another stream, as retries and reconnects deliver them.
    if (n % 10 === 0) open[s % streams]!.sendEncoded(message);
    if (n % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  const sent = Date.now();
  await Promise.all(open.map((o) => o.end()));
  als.close();
  process.send!({ done: true, sent });
}

/** Waits until the meter has billed `entries`; fails (instead of hanging) when entries are refused or progress stalls. */
async function untilBilled(
  totals: { billed: number; forged: number; deadLettered: number },
  entries: number,
  child: ChildProcess,
): Promise<void> {
  let last = -1;
  let since = Date.now();
  while (totals.billed < entries) {
    if (totals.billed !== last) [last, since] = [totals.billed, Date.now()];
    if (totals.forged > 0 || totals.deadLettered > 0 || Date.now() - since > 60_000) {
      child.kill();
      throw new Error(`the meter stopped at ${totals.billed} of ${entries} entries billed: ${JSON.stringify(totals)}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function run(
  label: string,
  databaseUrl: string,
  schema: string | undefined,
  options: { entries: number; streams: number; batch: number; batchMax: number; trace: boolean },
) {
  const quiet = new Writable({ write: (_c, _e, done) => done() });
  // The meter bills only entries whose authz signature verifies: share the secret the client signs its entries with.
  const config = loadConfig({
    env: { TOLLGATE_DATABASE_URL: databaseUrl, TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET },
    overrides: { "meter.listen": "127.0.0.1:0", "authz.listen": "127.0.0.1:0", "meter.batch_max": options.batchMax },
  });
  const plane = await startControlPlane(config, {
    roles: ["meter"],
    logger: createLogger({ level: "warn", destination: quiet }),
    schema,
  });
  const { stores } = plane;
  const accounts: string[] = [];
  for (let i = 0; i < ACCOUNTS; i++) {
    const a = await stores.accounts.create({ name: `bench ${i}`, planId: "pro" });
    await stores.ledger.topUp({ accountId: a.id, amount: nanos(TOP_UP), feeBps: 2500, now: Date.now() });
    accounts.push(a.id);
  }
  const trace = options.trace ? traceStatements(stores.db.knex) : undefined;
  const child = fork(
    new URL(import.meta.url).pathname,
    [
      "client",
      `127.0.0.1:${plane.metering.server!.port}`,
      JSON.stringify(accounts),
      String(options.entries),
      String(options.streams),
      String(options.batch),
    ],
    { execArgv: ["--import", "tsx"] },
  );
  let sent = 0;
  const cpuBefore = process.cpuUsage();
  const pgBefore = await backendCpuMs(stores.db.knex);
  const started = await new Promise<number>((resolve) =>
    child.on("message", (m: { started?: number; sent?: number }) => {
      if (m.started) resolve(m.started);
      if (m.sent) sent = m.sent;
    }),
  );
  // The meter counts what its commits billed; polling SQL here would load the database being measured.
  await untilBilled(plane.metering.meter.totals, options.entries, child);
  const seconds = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const pgAfter = await backendCpuMs(stores.db.knex);
  let pgCpuMs = 0;
  for (const [pid, ms] of pgAfter) pgCpuMs += ms - (pgBefore.get(pid) ?? 0);
  trace?.stop(label);
  await new Promise((r) => child.on("exit", r));
  await plane.metering.meter.drain();

  const committed = Number((await stores.db.knex("usage_log").count({ n: "*" }).first())!.n);
  const debits = Number(
    (await stores.db.knex("ledger_entries").where({ kind: "usage_debit" }).count({ n: "*" }).first())!.n,
  );
  const expected = new Map<string, bigint>();
  for (let i = 0; i < options.entries; i++)
    expected.set(accounts[i % accounts.length]!, (expected.get(accounts[i % accounts.length]!) ?? 0n) + costOf(i));
  let exact = debits === options.entries && committed === options.entries;
  for (const a of accounts) {
    const balance = (await stores.ledger.balance(a)).balance;
    if (balance !== TOP_UP - expected.get(a)! || (await stores.ledger.entriesTotal(a)) !== balance) exact = false;
  }
  const totals = plane.metering.meter.totals;
  await plane.close();
  return {
    store: label,
    entries: options.entries,
    delivered: totals.received,
    duplicates: totals.alreadyBilled,
    "client send s": ((sent - started) / 1000).toFixed(2),
    seconds: seconds.toFixed(2),
    "entries/s": Math.round(options.entries / seconds),
    // CPU per entry does not grow when other processes take the cores (wall-clock throughput does).
    "meter cpu µs/entry": Math.round((cpu.user + cpu.system) / options.entries),
    "pg cpu µs/entry": label === "postgresql" ? Math.round((pgCpuMs * 1000) / options.entries) : "-",
    "exactly-once": exact ? "yes" : "NO",
  };
}

const BENCH_APP = "tollgate_bench_meter";

/** CPU milliseconds used so far by each PostgreSQL backend serving this bench (the server on this machine, Linux). */
async function backendCpuMs(knex: import("knex").Knex): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (knex.client.config.client !== "pg") return out;
  const result = await knex.raw("select pid from pg_stat_activity where application_name = ?", [BENCH_APP]);
  for (const { pid } of result.rows as Array<{ pid: number }>) {
    try {
      // Fields 14 and 15 (utime, stime) in clock ticks of 10 ms, counted after the command name's closing ")".
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      // Not on this machine (or gone): no figure.
    }
  }
  return out;
}

/** Counts the statements sent from now on by kind (first words), with the time spent waiting for their answers. */
function traceStatements(knex: import("knex").Knex): { stop(label: string): void } {
  const kinds = new Map<string, { n: number; ms: number }>();
  const pending = new Map<string, { kind: string; at: number }>();
  let on = true;
  const kindOf = (sql: string) => {
    const words = sql.trim().toLowerCase().replace(/\s+/g, " ").replace(/["`]/g, "").split(" ");
    const i = words.findIndex((w) => w === "into" || w === "update" || w === "from");
    return words[0] === "with" || i < 0 ? words.slice(0, 2).join(" ") : `${words[0]} ${words[i]} ${words[i + 1]}`;
  };
  knex.on("query", (q: { __knexQueryUid?: string; sql: string }) => {
    if (on && q.__knexQueryUid) pending.set(q.__knexQueryUid, { kind: kindOf(q.sql), at: performance.now() });
  });
  knex.on("query-response", (_r: unknown, q: { __knexQueryUid?: string }) => {
    const p = q.__knexQueryUid ? pending.get(q.__knexQueryUid) : undefined;
    if (!p) return;
    pending.delete(q.__knexQueryUid!);
    const k = kinds.get(p.kind) ?? { n: 0, ms: 0 };
    k.n++;
    k.ms += performance.now() - p.at;
    kinds.set(p.kind, k);
  });
  return {
    stop(label) {
      on = false;
      // knex sends BEGIN and COMMIT without query events; every group commit reads its decisions' entries once.
      const commits = kinds.get("select from ledger_entries")?.n ?? 0;
      console.error(`${label}: ${commits} group commits; statements per commit and wait per statement:`);
      for (const [kind, k] of [...kinds].sort((a, b) => b[1].ms - a[1].ms))
        console.error(
          `  ${kind.padEnd(40)} ${String(k.n).padStart(6)}  ${(k.n / Math.max(commits, 1)).toFixed(2).padStart(6)}/commit  ${(k.ms / k.n).toFixed(2).padStart(7)} ms each  ${k.ms.toFixed(0).padStart(6)} ms total`,
        );
    },
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      entries: { type: "string" },
      streams: { type: "string" },
      batch: { type: "string" },
      postgres: { type: "string" },
      "batch-max": { type: "string" },
      only: { type: "string" },
      trace: { type: "boolean" },
    },
  });
  const options = {
    entries: Number(values.entries ?? 50_000),
    streams: Number(values.streams ?? 8),
    batch: Number(values.batch ?? 100),
    batchMax: Number(values["batch-max"] ?? 2000),
    trace: values.trace ?? false,
  };
  const rows: Array<Awaited<ReturnType<typeof run>>> = [];
  const dir = mkdtempSync(join(tmpdir(), "tollgate-bench-meter-"));
  try {
    if (values.only !== "postgres")
      rows.push(await run("sqlite (file, WAL)", `sqlite:${join(dir, "bench.db")}`, undefined, options));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const pg = values.postgres ?? process.env.TOLLGATE_BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const schema = `bench_meter_${process.pid}`;
  const admin = knexFactory({ client: "pg", connection: pg });
  try {
    if (values.only === "sqlite") throw new Error("--only sqlite");
    await admin.raw("select 1");
    // Named, so the meter's own PostgreSQL backends can be found and their CPU time read.
    const named = `${pg}${pg.includes("?") ? "&" : "?"}application_name=${BENCH_APP}`;
    rows.push(await run("postgresql", named, schema, options));
  } catch (error) {
    console.error(`postgresql skipped: ${(error as Error).message}`);
  } finally {
    await admin.raw("drop schema if exists ?? cascade", [schema]).catch(() => {});
    await admin.destroy();
  }
  const columns = Object.keys(rows[0]!);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c as keyof typeof r]).length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ") + " |";
  console.log(
    `bench/meter: ${options.entries} entries (+10% duplicates) over ${options.streams} ALS streams, batches of ${options.batch}, ${ACCOUNTS} accounts; client in a separate process`,
  );
  console.log(line(columns));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of rows) console.log(line(columns.map((c) => String(r[c as keyof typeof r]))));
}

if (process.argv[2] === "client") {
  const [, , , address, accounts, entries, streams, batch] = process.argv;
  void client(address!, JSON.parse(accounts!), Number(entries), Number(streams), Number(batch)).then(() =>
    process.exit(0),
  );
} else {
  void main().then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
