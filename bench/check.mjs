#!/usr/bin/env node
// bench/check: req/s and p50/p99 of envoy.service.auth.v3.Authorization/Check for a null grpc-js server (the floor)
// and for tollgate authz, from one run, with the ratio of each to the floor. Load comes from h2load (nghttp2-client)
// in its own process, speaking gRPC over h2c with one realistic, pre-framed CheckRequest. See bench/README.md.
//
//   npm run build && node bench/check.mjs [--duration 12] [--rounds 3] [--warm-up 1] [--connections 2] [--streams 32]
//                                         [--redis redis://127.0.0.1:6379] [--only a,b] [--profile] [--no-pin] [--keep]
//
// --duration is the measured seconds per target, split over --rounds interleaved runs (a b a b …), each after its own
// --warm-up. --profile keeps each server's --cpu-prof (summarise with bench/cpuprofile-summary.mjs).
//
// Adding a target is one entry in TARGETS below.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist");
const CLI = join(DIST, "cli/main.js");
/** The issues' targets, as ratios of req/s to the null server: embedded defaults (b) and the Redis backend (c). */
const TARGETS_RATIO = { b: 0.6, c: 0.5 };

if (!existsSync(CLI)) {
  console.error("bench/check: dist/ is missing; run `npm run build` first.");
  process.exit(2);
}
const { grpcDefinition } = await import(join(DIST, "dataplane/grpc/grpc-server.js"));
const { Authorization, CheckResponseSchema } = await import(join(DIST, "gen/envoy/service/auth/v3/external_auth_pb.js"));
const { checkRequest, grpcFrame } = await import("./check-request.mjs");

const { values: flags } = parseArgs({
  options: {
    duration: { type: "string", default: "12" },
    rounds: { type: "string", default: "3" },
    "warm-up": { type: "string", default: "1" },
    connections: { type: "string", default: "2" },
    streams: { type: "string", default: "32" },
    redis: { type: "string", default: process.env.TOLLGATE_REDIS_URL },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-pin": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1);
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith("//"))).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
  process.exit(0);
}
const settings = {
  rounds: positive(flags.rounds, "--rounds"),
  secondsPerRound: Math.max(1, Math.round(positive(flags.duration, "--duration") / positive(flags.rounds, "--rounds"))),
  warmUpSeconds: positive(flags["warm-up"], "--warm-up"),
  connections: positive(flags.connections, "--connections"),
  streams: positive(flags.streams, "--streams"),
  redisUrl: flags.redis || undefined,
};

/**
 * Every server the run measures, in order. `start` returns { address, stop(), note? }; `needsKey` targets get the
 * bench key's secret in the request; `when` decides whether the target runs. The first entry is the baseline the
 * ratio is taken against.
 */
const TARGETS = [
  { id: "a", label: "null grpc-js Check (protobuf-es decode, fixed OK)", start: startNullServer },
  { id: "b", label: "tollgate authz, embedded defaults", needsKey: true, start: (ctx) => startTollgate(ctx, {}) },
  {
    id: "c",
    label: "tollgate authz, TOLLGATE_REDIS_URL",
    needsKey: true,
    when: () => settings.redisUrl !== undefined,
    // A prefix of its own per run: earlier runs' limiter logs and reservations must not be part of this measurement;
    // its keys are deleted after the run (unless --keep), so runs do not pile up in a shared Redis.
    start: (ctx) => startTollgate(ctx, { TOLLGATE_REDIS_URL: settings.redisUrl, TOLLGATE_REDIS_PREFIX: REDIS_PREFIX }),
  },
];

/** Target (c)'s Redis key prefix for this run. */
const REDIS_PREFIX = `bench-${process.pid}-${Date.now()}`;

/** Deletes every key under a prefix (SCAN, never KEYS: the Redis may be shared). */
async function deleteRedisPrefix(url, prefix) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 1000 })) if (keys.length > 0) await redis.unlink(...keys);
  } catch (error) {
    console.log(`  note: could not delete Redis keys under ${prefix}: ${error.message}`);
  } finally {
    redis.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Targets.

async function startNullServer(ctx) {
  const port = await freePort();
  const child = launch(ctx, [join(ROOT, "bench/null-check-server.mjs"), `127.0.0.1:${port}`], {}, "null");
  return { address: `127.0.0.1:${port}`, stop: () => stopChild(child), child };
}

async function startTollgate(ctx, extraEnv) {
  const port = await freePort();
  const env = { ...ctx.tollgateEnv, TOLLGATE_AUTHZ_LISTEN: `127.0.0.1:${port}`, ...extraEnv };
  const child = launch(ctx, [CLI, "serve", "--role", "authz", "--mock-providers"], env, "tollgate");
  return { address: `127.0.0.1:${port}`, stop: () => stopChild(child), child };
}

function launch(ctx, args, env, name) {
  const nodeArgs = ctx.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${ctx.profileDir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : [];
  const [command, ...rest] = ctx.pin ? ["taskset", "-c", "0", process.execPath] : [process.execPath];
  const child = spawn(command, [...rest, ...nodeArgs, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.output = "";
  child.stdout.on("data", (d) => (child.output += d));
  child.stderr.on("data", (d) => (child.output += d));
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  // A server that dies mid-run must say why, not leave only a refused connection behind.
  child.once("exit", (code, signal) => {
    if (!child.stopping) console.error(`bench/check: server ${name} exited unexpectedly (${signal ?? code}); its last output:\n${child.output.slice(-3000)}`);
  });
  return child;
}

async function stopChild(child) {
  child.stopping = true;
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  const timeout = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await child.exited;
  clearTimeout(timeout);
}

/** Sets up the SQLite file tollgate targets share: an account on plan "scale" and one key with limits that never bind. */
function prepareTollgateStore(ctx) {
  const env = { ...process.env, ...ctx.tollgateEnv };
  const cli = (...args) => {
    const run = spawnSync(process.execPath, [CLI, ...args, "--json"], { env, encoding: "utf8" });
    if (run.status !== 0) throw new Error(`tollgate ${args.join(" ")} failed (${run.status}): ${run.stderr || run.stdout}`);
    return JSON.parse(run.stdout);
  };
  const account = cli("accounts", "create", "--name", "bench", "--plan", "scale");
  const key = cli("keys", "create", "--account", account.id, "--name", "bench");
  // Admission reserves each request's worst-case cost and, with no meter running, never gives it back during the run.
  // $1M: enough for ~10^8 reservations, and under the Redis gate's 2^53 nano-USD ceiling (~$9M).
  if (ctx.cliCommands.includes("credits add")) cli("credits", "add", "--account", account.id, "--amount", "1000000");
  // No CLI flag sets per-key limits yet, so write the overrides directly; a limiter must never refuse mid-run.
  const db = new ctx.Sqlite(ctx.dbFile);
  try {
    const changed = db
      .prepare("UPDATE api_keys SET requests_per_minute = ?, tokens_per_minute = ?, updated_at = ? WHERE id = ?")
      .run(1_000_000_000, 1_000_000_000_000, Date.now(), key.id).changes;
    if (changed !== 1) throw new Error(`could not set limits on key ${key.id}`);
  } finally {
    db.close();
  }
  return { accountId: account.id, keyId: key.id, secret: key.secret };
}

// ---------------------------------------------------------------------------------------------------------------------
// A grpc-js client, used only to wait for readiness and to verify the verdict before and after the load.

const AuthorizationClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");

function callCheck(client, request, deadlineMs = 2000) {
  return new Promise((resolve, reject) =>
    client.check(request, { deadline: Date.now() + deadlineMs }, (error, response) => (error ? reject(error) : resolve(response))),
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

/** Throws unless the response is an allow: a benchmark of denials measures the wrong path. */
function assertAllowed(response, when) {
  if (response.status?.code === 0 && response.httpResponse.case === "okResponse") return toBinary(CheckResponseSchema, response).length;
  const denied = response.httpResponse.case === "deniedResponse" ? response.httpResponse.value : undefined;
  throw new Error(
    `Check was not allowed ${when}: grpc status ${response.status?.code} ${response.status?.message ?? ""}` +
      (denied ? `, HTTP ${denied.status?.code}: ${denied.body}` : ""),
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// h2load.

/** CPU seconds (user + system, all threads) a process has used so far, from /proc; undefined where there is no /proc. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** Runs h2load against `address`; also returns the server's CPU seconds spent in the measured period (not warm-up). */
function runH2load(ctx, address, requestFile, logFile, serverPid) {
  const args = [
    "-d", requestFile,
    "-H", "content-type: application/grpc",
    "-H", "te: trailers",
    "-c", String(settings.connections),
    "-m", String(settings.streams),
    "-t", "1",
    "-D", String(settings.secondsPerRound),
    "--warm-up-time", String(settings.warmUpSeconds),
    "--log-file", logFile,
    `http://${address}/envoy.service.auth.v3.Authorization/Check`,
  ];
  const [command, ...rest] = ctx.pin ? ["taskset", "-c", "1", "h2load", ...args] : ["h2load", ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, rest, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let cpuStart;
    let cpuEnd;
    child.stdout.on("data", (d) => {
      out += d;
      // h2load flushes these lines as they happen, so they bracket the measured period.
      if (cpuStart === undefined && out.includes("Main benchmark duration is started")) cpuStart = cpuSeconds(serverPid);
      if (cpuEnd === undefined && out.includes("Main benchmark duration is over")) cpuEnd = cpuSeconds(serverPid);
    });
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve({ out, serverCpuSeconds: cpuEnd - cpuStart }) : reject(new Error(`h2load exited ${code}:\n${out}`)),
    );
  });
}

function parseH2load(out, logFile) {
  const number = (re) => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot parse h2load output (${re}):\n${out}`);
    return Number(m[1]);
  };
  const reqPerSec = number(/finished in [^,]+, ([\d.]+) req\/s/);
  const [total, , done, succeeded, failed, errored, timeout] = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/
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
  if (straddled > settings.connections * settings.streams) non200 += straddled;
  return { reqPerSec, total, done, succeeded, failed, errored, timeout, non200, straddled, dataBytes, latencies };
}

// ---------------------------------------------------------------------------------------------------------------------
// Run.

async function main() {
  const pin = !flags["no-pin"] && spawnSync("taskset", ["-c", "0", "true"]).status === 0;
  const h2loadVersion = spawnSync("h2load", ["--version"], { encoding: "utf8" });
  if (h2loadVersion.status !== 0) throw new Error("h2load not found; install Debian's nghttp2-client");
  const work = mkdtempSync(join(tmpdir(), "tollgate-bench-"));
  const dbFile = join(work, "bench.db");
  const ctx = {
    pin,
    work,
    dbFile,
    profileDir: flags.profile ? join(work, "profiles") : undefined,
    tollgateEnv: { TOLLGATE_DATABASE_URL: `sqlite:${dbFile}`, TOLLGATE_LOG_LEVEL: "warn" },
    Sqlite: (await import("better-sqlite3")).default,
    cliCommands: spawnSync(process.execPath, [CLI, "help"], { encoding: "utf8" }).stdout,
  };
  const targets = TARGETS.filter((t) => (t.when ? t.when() : true) && (!flags.only || flags.only.split(",").includes(t.id)));
  const key = targets.some((t) => t.needsKey) ? prepareTollgateStore(ctx) : undefined;
  const requestWith = checkRequest(key?.secret ?? "tg_" + "0".repeat(40));
  const requestFile = join(work, "check-request.grpc");
  writeFileSync(requestFile, grpcFrame(requestWith.bytes));

  const os = await import("node:os");
  const info = {
    date: new Date().toISOString(),
    node: process.version,
    h2load: h2loadVersion.stdout.trim(),
    cpus: os.cpus().length,
    loadAverageAtStart: os.loadavg()[0],
    pinned: pin ? "server on cpu 0, h2load on cpu 1 (taskset)" : "no",
    connections: settings.connections,
    streams: settings.streams,
    inFlight: settings.connections * settings.streams,
    rounds: settings.rounds,
    secondsPerRound: settings.secondsPerRound,
    warmUpSeconds: settings.warmUpSeconds,
    checkRequestBytes: requestWith.bytes.length,
    chatBodyBytes: requestWith.bodyBytes,
    headers: requestWith.headerCount,
  };
  console.log(
    `bench/check: ${info.node}, ${info.h2load}, ${info.cpus} cpus, pinned: ${info.pinned}\n` +
      `  load: h2load -c ${info.connections} -m ${info.streams} (${info.inFlight} in flight) -t 1; ` +
      `${info.rounds} interleaved rounds × (${info.warmUpSeconds}s warm-up + ${info.secondsPerRound}s measured) per target\n` +
      `  request: CheckRequest ${info.checkRequestBytes} B (chat body ${info.chatBodyBytes} B as raw_body, ${info.headers} headers)` +
      (ctx.profileDir ? `\n  profiling: --cpu-prof into ${ctx.profileDir}` : ""),
  );
  if (info.loadAverageAtStart > 0.5) {
    console.log(`  note: load average ${info.loadAverageAtStart.toFixed(2)} at start; other work shares these cores, so absolute numbers are noisy (the interleaved ratio less so)`);
  }

  const running = [];
  const results = targets.map((t) => ({ id: t.id, label: t.label, rounds: [], problems: [] }));
  try {
    // Start and verify every target first, then interleave the measurements (a b a b …) so background load on a
    // shared machine hits every target alike; an idle target costs nothing while another is measured.
    for (const target of targets) {
      const server = await target.start(ctx);
      running.push(server);
      server.client = new AuthorizationClient(server.address, grpc.credentials.createInsecure());
      try {
        server.responseBytes = assertAllowed(await waitReady(server.client, requestWith.message, server), `by (${target.id}) before the run`) + 5;
      } catch (error) {
        error.message += `\nserver output (last 2000 chars):\n${server.child.output.slice(-2000)}`;
        throw error;
      }
      for (let i = 0; i < 200; i++) assertAllowed(await callCheck(server.client, requestWith.message), `by (${target.id}) while priming`);
    }
    for (let round = 1; round <= settings.rounds; round++) {
      const line = [];
      for (const [i, target] of targets.entries()) {
        const logFile = join(work, `h2load-${target.id}-${round}.log`);
        const { out, serverCpuSeconds } = await runH2load(ctx, running[i].address, requestFile, logFile, running[i].child.pid);
        const parsed = parseH2load(out, logFile);
        parsed.serverCpuSeconds = serverCpuSeconds;
        parsed.cpuMicrosPerRequest = (serverCpuSeconds * 1e6) / parsed.succeeded;
        results[i].rounds.push(parsed);
        line.push(`${target.id} ${Math.round(parsed.reqPerSec)} req/s ${Math.round(parsed.cpuMicrosPerRequest)} µs cpu/req`);
      }
      console.log(`  round ${round}: ${line.join(", ")}`);
    }
    for (const [i, target] of targets.entries()) {
      assertAllowed(await callCheck(running[i].client, requestWith.message), `by (${target.id}) after the run`);
    }
  } finally {
    for (const server of running) {
      server.client?.close();
      await server.stop();
    }
    if (!flags.keep && settings.redisUrl !== undefined) await deleteRedisPrefix(settings.redisUrl, REDIS_PREFIX);
    if (!flags.keep && !flags.profile) rmSync(work, { recursive: true, force: true });
    else console.log(`  kept ${work}`);
  }

  for (const [i, r] of results.entries()) {
    const rounds = r.rounds;
    const sum = (f) => rounds.reduce((acc, x) => acc + f(x), 0);
    const latencies = rounds.flatMap((x) => x.latencies).sort((x, y) => x - y);
    const pct = (p) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] / 1000;
    r.reqPerSec = median(rounds.map((x) => x.reqPerSec));
    r.p50 = pct(50);
    r.p99 = pct(99);
    r.cpuMicrosPerRequest = sum((x) => x.serverCpuSeconds) * 1e6 / sum((x) => x.succeeded);
    r.succeeded = sum((x) => x.succeeded);
    r.responseBytes = running[i].responseBytes;
    r.bytesPerResponse = sum((x) => x.dataBytes) / r.succeeded;
    const bad = { failed: sum((x) => x.failed), errored: sum((x) => x.errored), timeout: sum((x) => x.timeout), "non-200": sum((x) => x.non200) };
    if (Object.values(bad).some((n) => n > 0)) r.problems.push(Object.entries(bad).map(([k, n]) => `${n} ${k}`).join(", "));
    // h2load sees HTTP 200 for every gRPC call, so also check the bytes: every response should be a full allow.
    // h2load's data count includes the warm-up's responses and `succeeded` does not, so bytes per measured response
    // read up to (warm-up + measured) / measured times an allow; a deny is a third of an allow's size or less.
    const warmUpShare = (settings.warmUpSeconds + settings.secondsPerRound) / settings.secondsPerRound;
    if (!(r.bytesPerResponse >= 0.9 * r.responseBytes - 4 && r.bytesPerResponse <= 1.1 * warmUpShare * r.responseBytes + 4)) {
      r.problems.push(`${r.bytesPerResponse.toFixed(0)} data bytes per response, expected ${r.responseBytes}–${Math.round(warmUpShare * r.responseBytes)} (an allow; the upper figure counts warm-up responses)`);
    }
    for (const x of rounds) delete x.latencies;
  }
  const baseline = results[0]?.id === TARGETS[0].id ? results[0] : undefined;
  for (const r of results) {
    // The ratio is the median of per-round ratios: each compares runs seconds apart, under the same background load.
    r.ratio = baseline ? median(r.rounds.map((x, k) => x.reqPerSec / baseline.rounds[k].reqPerSec)) : undefined;
    // The same ratio from server CPU per request: what throughput would be if the server had its core to itself.
    r.cpuRatio = baseline ? baseline.cpuMicrosPerRequest / r.cpuMicrosPerRequest : undefined;
  }
  const rows = [
    ["target", "req/s", "p50 ms", "p99 ms", "ratio to null", "cpu µs/req", "cpu ratio", "resp B"],
    ...results.map((r) => [
      `(${r.id}) ${r.label}`,
      String(Math.round(r.reqPerSec)),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      r.ratio === undefined ? "-" : r.ratio.toFixed(2),
      Number.isFinite(r.cpuMicrosPerRequest) ? r.cpuMicrosPerRequest.toFixed(0) : "-",
      r.cpuRatio === undefined || !Number.isFinite(r.cpuRatio) ? "-" : r.cpuRatio.toFixed(2),
      String(Math.round(r.bytesPerResponse)),
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join(" | ");
  console.log("\n" + line(rows[0]) + "\n" + widths.map((w) => "-".repeat(w)).join("-|-") + "\n" + rows.slice(1).map(line).join("\n"));
  console.log(
    "req/s and ratio: medians over rounds; p50/p99: every measured request of every round; cpu µs/req: the server's\n" +
      "user+sys CPU (all threads) per request while measured; cpu ratio: null's cpu/req over this one's (robust to\n" +
      "other load on the machine); resp B: gRPC data bytes per response (an allow, not a deny)",
  );
  for (const r of results) if (r.problems.length) console.log(`WARNING (${r.id}): ${r.problems.join("; ")}`);
  for (const r of results) {
    const target = TARGETS_RATIO[r.id];
    if (target === undefined || !baseline) continue;
    console.log(
      `${r === results.find((x) => TARGETS_RATIO[x.id] !== undefined) ? "\n" : ""}target ≥ ${target} (${r.id}/a req/s): ${r.ratio >= target ? "met" : "missed"} (${r.ratio.toFixed(2)}; by cpu/req ${r.cpuRatio?.toFixed(2)})`,
    );
  }

  const outDir = join(ROOT, "bench/results");
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, `check-${info.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(outFile, JSON.stringify({ settings: info, results }, null, 2) + "\n");
  console.log(`results: ${outFile} (git-ignored)`);
}

function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function positive(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench/check: ${name} must be a positive integer, not "${value}"`);
    process.exit(2);
  }
  return n;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main().catch((error) => {
  console.error(`\nbench/check: ${error.stack ?? error}`);
  process.exit(1);
});
