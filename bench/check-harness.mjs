// The machinery the Check benches share (bench/check.mjs, bench/check-replicas.mjs): starting built tollgate authz
// processes on a bench store set up through the admin API, verifying they answer the bench request with an allow,
// driving them with h2load, and reading CPU time from /proc. Importing this module checks that dist/ exists.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";

/** The repository root and the built CLI every target runs. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DIST = join(ROOT, "dist");
export const CLI = join(DIST, "cli/main.js");
const PROGRAM = `bench/${basename(process.argv[1] ?? "check", ".mjs")}`;

if (!existsSync(CLI)) {
  console.error(`${PROGRAM}: dist/ is missing; run \`npm run build\` first.`);
  process.exit(2);
}
const { grpcDefinition } = await import(join(DIST, "dataplane/grpc/grpc-server.js"));
const { Authorization, CheckResponseSchema } = await import(
  join(DIST, "gen/envoy/service/auth/v3/external_auth_pb.js")
);
const { SERVE_NODE_FLAGS } = await import(join(DIST, "cli/node-flags.js"));
const { freePort, startAdminServer } = await import("./admin-server.mjs");
export { freePort };

/** Prints the comment block at the top of `fileUrl` (the bench's usage) and exits 0. */
export function printUsage(fileUrl) {
  const lines = readFileSync(fileURLToPath(fileUrl), "utf8").split("\n").slice(1);
  console.log(
    lines
      .slice(
        0,
        lines.findIndex((l) => !l.startsWith("//")),
      )
      .map((l) => l.replace(/^\/\/ ?/, ""))
      .join("\n"),
  );
  process.exit(0);
}

/** The parseArgs options of the load every Check bench takes: measured seconds, rounds, warm-up, h2load -c and -m. */
export const LOAD_OPTIONS = {
  duration: { type: "string", default: "12" },
  rounds: { type: "string", default: "3" },
  "warm-up": { type: "string", default: "1" },
  connections: { type: "string", default: "2" },
  streams: { type: "string", default: "32" },
};

/** The load settings from parsed LOAD_OPTIONS flags; --duration is split over the rounds. */
export function loadSettings(flags) {
  const rounds = positive(flags.rounds, "--rounds");
  return {
    rounds,
    secondsPerRound: Math.max(1, Math.round(positive(flags.duration, "--duration") / rounds)),
    warmUpSeconds: positive(flags["warm-up"], "--warm-up"),
    connections: positive(flags.connections, "--connections"),
    streams: positive(flags.streams, "--streams"),
  };
}

/**
 * A fresh run directory and the environment every tollgate process of the run shares: its own SQLite file, data
 * directory, and open-reservation bounds at their maxima (no meter runs, so every allow's reservation stays open).
 */
export function createBenchContext({ pin, profile }) {
  const work = mkdtempSync(join(tmpdir(), "tollgate-bench-"));
  const dbFile = join(work, "bench.db");
  return {
    pin,
    work,
    dbFile,
    profileDir: profile ? join(work, "profiles") : undefined,
    // The local operator credential (set-up) and anything else a role keeps on disk stay in the run's own directory.
    tollgateEnv: {
      TOLLGATE_DATABASE_URL: `sqlite:${dbFile}`,
      // Targets are embedded unless they set Redis themselves, and set-up talks to its own admin server, whatever the
      // shell exports ("" is unset to tollgate).
      TOLLGATE_REDIS_URL: "",
      TOLLGATE_ADMIN_URL: "",
      TOLLGATE_ADMIN_TOKEN: "",
      TOLLGATE_DATA_DIR: join(work, "data"),
      TOLLGATE_LOG_LEVEL: "warn",
      // No meter runs, so every allowed Check leaves its reservation open for the whole run: raise the open-reservation
      // bounds to their maxima (1M per account, 10M per gate) so admission never refuses with 429 mid-run.
      TOLLGATE_CREDITS_MAX_OPEN_RESERVATIONS_PER_ACCOUNT: "1000000",
      TOLLGATE_CREDITS_MAX_OPEN_RESERVATIONS_TOTAL: "10000000",
    },
  };
}

/** Whether `taskset` can pin here (it is absent on some machines and refused in some containers). */
export function canPin() {
  return spawnSync("taskset", ["-c", "0", "true"]).status === 0;
}

/** h2load's version line; throws when it is not installed. */
export function h2loadVersion() {
  const run = spawnSync("h2load", ["--version"], { encoding: "utf8" });
  if (run.status !== 0) throw new Error("h2load not found; install Debian's nghttp2-client");
  return run.stdout.trim();
}

// ---------------------------------------------------------------------------------------------------------------------
// Processes.

/**
 * Starts `node ARGS` (pinned to `cpu` when given), keeping its output for error messages. Every server runs with the
 * node flags serve wants (SERVE_NODE_FLAGS; README, Operations), as the image runs Tollgate, so the arms differ only in
 * their code.
 */
export function launch(ctx, args, env, name, cpu) {
  const profile = ctx.profileDir
    ? ["--cpu-prof", `--cpu-prof-dir=${ctx.profileDir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`]
    : [];
  const nodeArgs = [...SERVE_NODE_FLAGS, ...profile];
  const [command, ...rest] = cpu === undefined ? [process.execPath] : ["taskset", "-c", String(cpu), process.execPath];
  const child = spawn(command, [...rest, ...nodeArgs, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.output = "";
  child.stdout.on("data", (d) => (child.output += d));
  child.stderr.on("data", (d) => (child.output += d));
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  // A server that dies mid-run must say why, not leave only a refused connection behind.
  child.once("exit", (code, signal) => {
    if (!child.stopping)
      console.error(
        `${PROGRAM}: server ${name} exited unexpectedly (${signal ?? code}); its last output:\n${child.output.slice(-3000)}`,
      );
  });
  return child;
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
export async function stopChild(child) {
  child.stopping = true;
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  const timeout = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await child.exited;
  clearTimeout(timeout);
}

/**
 * Starts `tollgate serve --role authz --mock-providers` on the run's store and a free port, plus `extraEnv`; `tree`
 * runs another checkout's build on that checkout's store instead (bench/check --baseline).
 */
export async function startAuthz(ctx, extraEnv, cpu, tree = { cli: CLI, env: ctx.tollgateEnv, name: "tollgate" }) {
  const port = await freePort();
  const env = { ...tree.env, TOLLGATE_AUTHZ_LISTEN: `127.0.0.1:${port}`, ...extraEnv };
  const child = launch(ctx, [tree.cli, "serve", "--role", "authz", "--mock-providers"], env, tree.name, cpu);
  return { address: `127.0.0.1:${port}`, stop: () => stopChild(child), child };
}

/** Per-key limits that never bind: the most an operator may set (10M RPM, 10^12 TPM), far above any rate here. */
const UNBOUNDED_RPM = "10000000";
const UNBOUNDED_TPM = "1000000000000";

/**
 * Sets up the SQLite file tollgate targets share: an account on plan "scale" and `keys` keys (default 1) with limits
 * that never bind; returns the first key's id and secret, and every key's secret in `secrets`.
 * The CLI is an admin-API client, so this starts `tollgate serve --role admin` on the bench's store for the set-up
 * and stops it before any target starts (nothing but the measured authz processes run during the load).
 * `plainKey` gives the keys per-minute limits only, as releases before daily quotas and spend caps had. `cli`, `env` and
 * `dataDir` set up another checkout's store with its own build instead (bench/check --baseline).
 */
export async function prepareTollgateStore(
  ctx,
  { plainKey = false, keys = 1, cli = CLI, env = ctx.tollgateEnv, dataDir = join(ctx.work, "data") } = {},
) {
  const admin = await startAdminServer({ cli, env, dataDir, nodeFlags: SERVE_NODE_FLAGS });
  try {
    const account = admin.cli("accounts", "create", "--name", "bench", "--plan", "scale");
    // An operator may widen a key's limits beyond its plan: the limiter must never refuse mid-run.
    const createKey = (name) =>
      admin.cli(
        "keys",
        "create",
        "--account",
        account.id,
        "--name",
        name,
        "--rpm",
        UNBOUNDED_RPM,
        "--tpm",
        UNBOUNDED_TPM,
        // Issue 14: the Check also decides daily quotas, requests in flight (no meter runs, so every admitted request
        // stays in flight until the run ends: the most an operator may set) and a spend cap on the key and on its
        // account (they never bind here: no more than the balance, which admission checks first).
        ...(plainKey
          ? []
          : [
              "--rpd",
              "1000000000",
              "--tpd",
              "1000000000000000",
              "--max-concurrency",
              "1000000",
              "--budget-usd",
              "1000000",
              "--budget-period",
              "month",
            ]),
      );
    const created = Array.from({ length: keys }, (_, i) => createKey(i === 0 ? "bench" : `bench-${i + 1}`));
    // Admission reserves each request's worst-case cost and, with no meter running, never gives it back during the run.
    // $1M: enough for ~10^8 reservations, and under the Redis gate's 2^53 nano-USD ceiling (~$9M).
    admin.cli("credits", "add", "--account", account.id, "--amount", "1000000");
    if (!plainKey) admin.cli("accounts", "budget", account.id, "--budget-usd", "1000000", "--budget-period", "month");
    return {
      accountId: account.id,
      keyId: created[0].id,
      secret: created[0].secret,
      secrets: created.map((k) => k.secret),
    };
  } finally {
    await admin.stop();
  }
}

/** Deletes every key under a prefix (SCAN, never KEYS: the Redis may be shared). */
export async function deleteRedisPrefix(url, prefix) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 1000 }))
      if (keys.length > 0) await redis.unlink(...keys);
  } catch (error) {
    console.log(`  note: could not delete Redis keys under ${prefix}: ${error.message}`);
  } finally {
    redis.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// A grpc-js client, used only to wait for readiness and to verify the verdict before and after the load.

const AuthorizationClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");

/** One Check over grpc-js; resolves with the decoded CheckResponse. */
export function callCheck(client, request, deadlineMs = 2000) {
  return new Promise((resolve, reject) =>
    client.check(request, { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

async function waitReady(client, request, target) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await callCheck(client, request, 1000);
    } catch (error) {
      if (target.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`target did not become ready: ${error.message}\n${target.child.output.slice(-2000)}`);
      }
      await sleep(100);
    }
  }
}

/** Throws unless the response is an allow (a benchmark of denials measures the wrong path); returns its size. */
export function assertAllowed(response, when) {
  if (response.status?.code === 0 && response.httpResponse.case === "okResponse")
    return toBinary(CheckResponseSchema, response).length;
  const denied = response.httpResponse.case === "deniedResponse" ? response.httpResponse.value : undefined;
  throw new Error(
    `Check was not allowed ${when}: grpc status ${response.status?.code} ${response.status?.message ?? ""}` +
      (denied ? `, HTTP ${denied.status?.code}: ${denied.body}` : ""),
  );
}

/**
 * Opens `server.client`, waits until the server answers `message` with an allow, then primes it with 200 more
 * Checks, each asserted. Sets `server.responseBytes` (an allow's gRPC DATA bytes: message plus 5-byte prefix).
 */
export async function verifyServer(server, message, id) {
  server.client = new AuthorizationClient(server.address, grpc.credentials.createInsecure());
  try {
    server.responseBytes =
      assertAllowed(await waitReady(server.client, message, server), `by (${id}) before the run`) + 5;
  } catch (error) {
    error.message += `\nserver output (last 2000 chars):\n${server.child.output.slice(-2000)}`;
    throw error;
  }
  for (let i = 0; i < 200; i++) assertAllowed(await callCheck(server.client, message), `by (${id}) while priming`);
}

// ---------------------------------------------------------------------------------------------------------------------
// CPU time and h2load.

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU seconds (user + system, all threads) a process has used so far, from /proc; undefined where there is no /proc. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/**
 * Runs h2load against `address` with the pre-framed CheckRequest in `requestFile` (pinned to `cpu` when given), with
 * loadSettings()'s connections, streams, secondsPerRound and warmUpSeconds.
 * `onStart(h2loadPid)` and `onEnd(h2loadPid)` run when h2load says its measured period starts and ends (it flushes
 * those lines as they happen, so they bracket the period, not the warm-up). Resolves with h2load's output.
 */
export function runH2load({ address, requestFile, logFile, settings, cpu }, hooks) {
  const { connections, streams, secondsPerRound, warmUpSeconds } = settings;
  const args = [
    "-d",
    requestFile,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "-c",
    String(connections),
    "-m",
    String(streams),
    "-t",
    "1",
    "-D",
    String(secondsPerRound),
    "--warm-up-time",
    String(warmUpSeconds),
    "--log-file",
    logFile,
    `http://${address}/envoy.service.auth.v3.Authorization/Check`,
  ];
  const [command, ...rest] =
    cpu === undefined ? ["h2load", ...args] : ["taskset", "-c", String(cpu), "h2load", ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, rest, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let started = false;
    let ended = false;
    child.stdout.on("data", (d) => {
      out += d;
      if (!started && out.includes("Main benchmark duration is started")) {
        started = true;
        hooks?.onStart?.(child.pid);
      }
      if (!ended && out.includes("Main benchmark duration is over")) {
        ended = true;
        hooks?.onEnd?.(child.pid);
      }
    });
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`h2load exited ${code}:\n${out}`))));
  });
}

/** h2load's figures and the measured period's per-request latencies (µs) from its log file. */
export function parseH2load(out, logFile, inFlight) {
  const number = (re) => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot parse h2load output (${re}):\n${out}`);
    return Number(m[1]);
  };
  const reqPerSec = number(/finished in [^,]+, ([\d.]+) req\/s/);
  const [total, , done, succeeded, failed, errored, timeout] =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
      .exec(out)
      ?.slice(1)
      .map(Number) ?? [];
  const dataBytes = Number(/traffic: .*?, [^,]*?\((\d+)\) data/.exec(out)?.[1]);
  // Per-request latencies (µs) from the log file; h2load logs only the measured period, not the warm-up.
  const latencies = [];
  let non200 = 0;
  let straddled = 0;
  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    if (!line) continue;
    const [, status, micros] = line.split("\t");
    if (status === "200") latencies.push(Number(micros));
    // Status 0: a stream whose response headers arrived during the warm-up and whose end fell in the measured period.
    else if (status === "0") straddled++;
    else non200++;
  }
  if (straddled > inFlight) non200 += straddled;
  return { reqPerSec, total, done, succeeded, failed, errored, timeout, non200, straddled, dataBytes, latencies };
}

/**
 * Problems h2load's counts show: failures, and DATA bytes per response outside an allow's range (h2load sees HTTP 200
 * for every gRPC call, so a deny shows only in its size). h2load's data count includes the warm-up's responses and
 * `succeeded` does not, so bytes per measured response read up to (warm-up + measured) / measured times an allow.
 */
export function h2loadProblems(rounds, responseBytes, warmUpShare) {
  const problems = [];
  const sum = (f) => rounds.reduce((acc, x) => acc + f(x), 0);
  const bad = {
    failed: sum((x) => x.failed),
    errored: sum((x) => x.errored),
    timeout: sum((x) => x.timeout),
    "non-200": sum((x) => x.non200),
  };
  if (Object.values(bad).some((n) => n > 0))
    problems.push(
      Object.entries(bad)
        .map(([k, n]) => `${n} ${k}`)
        .join(", "),
    );
  const bytesPerResponse = sum((x) => x.dataBytes) / sum((x) => x.succeeded);
  if (!(bytesPerResponse >= 0.9 * responseBytes - 4 && bytesPerResponse <= 1.1 * warmUpShare * responseBytes + 4)) {
    problems.push(
      `${bytesPerResponse.toFixed(0)} data bytes per response, expected ${responseBytes}–${Math.round(warmUpShare * responseBytes)} (an allow; the upper figure counts warm-up responses)`,
    );
  }
  return { problems, bytesPerResponse };
}

// ---------------------------------------------------------------------------------------------------------------------
// Small things.

/** Rows of cells as a text table: the first row is the header, the first column left-aligned, the rest right. */
export function formatTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join(" | ");
  return `${line(rows[0])}\n${widths.map((w) => "-".repeat(w)).join("-|-")}\n${rows.slice(1).map(line).join("\n")}`;
}

/** The median of numbers. */
export function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A flag's value as a positive integer; exits 2 naming the flag otherwise. */
export function positive(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`${PROGRAM}: ${name} must be a positive integer, not "${value}"`);
    process.exit(2);
  }
  return n;
}

/** Resolves after `ms`. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A redis-server of the bench's own on a free port, without persistence. */
export async function startPrivateRedis() {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    // Its log is not read: an unread pipe could fill and stall it.
    { stdio: "ignore" },
  );
  child.exited = new Promise((resolve) => child.once("exit", resolve));
  child.once("error", () => {});
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // Refused connections while redis-server starts are expected; connect() rejects with them.
  probe.on("error", () => {});
  for (let attempt = 0; ; attempt++) {
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return { url, stop: () => stopChild(child) };
    } catch (error) {
      if (attempt > 50 || child.exitCode !== null) throw new Error(`redis-server did not start: ${error.message}`);
      await sleep(100);
    }
  }
}
