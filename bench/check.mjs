#!/usr/bin/env node
// bench/check: req/s and p50/p99 of envoy.service.auth.v3.Authorization/Check for a null grpc-js server (the floor)
// and for tollgate authz, from one run, with the ratio of each to the floor. Load comes from h2load (nghttp2-client)
// in its own process, speaking gRPC over h2c with one realistic, pre-framed CheckRequest. See bench/README.md.
//
//   npm run build && node bench/check.mjs [--duration 12] [--rounds 3] [--warm-up 1] [--connections 2] [--streams 32]
//                                         [--redis redis://127.0.0.1:6379] [--only a,b] [--profile] [--no-pin] [--keep]
//                                         [--plain-key] [--baseline /path/to/other/checkout]
//
// --duration is the measured seconds per target, split over --rounds interleaved runs (a b a b …), each after its own
// --warm-up. --profile keeps each server's --cpu-prof (summarise with bench/cpuprofile-summary.mjs). --plain-key gives
// the bench key per-minute limits only (no daily quotas, concurrency limit or spend caps), as releases before them had.
// --baseline adds another checkout's build (built there, or with node_modules linked from this tree) as targets (b0)
// and (c0) beside (b) and (c), each on a store of its own set up by that build's CLI: measured in the same interleaved
// rounds, "did a Check get slower" is answered per round, seconds apart (use --plain-key against releases before
// daily quotas and spend caps, so both trees decide the same limits).
//
// Adding a target is one entry in TARGETS below.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  assertAllowed,
  callCheck,
  canPin,
  createBenchContext,
  deleteRedisPrefix,
  formatTable,
  h2loadProblems,
  h2loadVersion,
  launch,
  LOAD_OPTIONS,
  loadSettings,
  median,
  parseH2load,
  prepareTollgateStore,
  printUsage,
  ROOT,
  runH2load,
  startAuthz,
  stopChild,
  verifyServer,
  cpuSeconds,
  freePort,
} from "./check-harness.mjs";

/** The issues' targets, as ratios of req/s to the null server: embedded defaults (b) and the Redis backend (c). */
const TARGETS_RATIO = { b: 0.6, c: 0.5 };
const { checkRequest, grpcFrame } = await import("./check-request.mjs");

const { values: flags } = parseArgs({
  options: {
    ...LOAD_OPTIONS,
    redis: { type: "string", default: process.env.TOLLGATE_REDIS_URL },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-pin": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    "plain-key": { type: "boolean", default: false },
    baseline: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) printUsage(import.meta.url);
/** A checkout's commit, and whether its tracked files differ from it (what dist/ was built from may not be committed). */
function treeOf(dir) {
  const git = (...args) => spawnSync("git", ["-C", dir, ...args], { encoding: "utf8" }).stdout.trim();
  return {
    commit: git("rev-parse", "HEAD"),
    uncommittedChanges: git("status", "--porcelain", "--untracked-files=no") !== "",
  };
}

const settings = { ...loadSettings(flags), redisUrl: flags.redis || undefined };

/**
 * Every server the run measures, in order. `start` returns { address, stop(), note? }; `needsKey` targets get the
 * bench key's secret in the request; `when` decides whether the target runs. The first entry is the baseline the
 * ratio is taken against.
 */
const TARGETS = [
  { id: "a", label: "null grpc-js Check (protobuf-es decode, fixed OK)", start: startNullServer },
  { id: "b", label: "tollgate authz, embedded defaults", needsKey: true, start: (ctx) => startTollgate(ctx, {}) },
  {
    id: "b0",
    label: "baseline checkout: embedded defaults",
    needsKey: true,
    tree: "baseline",
    when: () => flags.baseline !== undefined,
    start: (ctx) => startTollgate(ctx, {}, ctx.baseline),
  },
  {
    id: "c",
    label: "tollgate authz, TOLLGATE_REDIS_URL",
    needsKey: true,
    when: () => settings.redisUrl !== undefined,
    // A prefix of its own per run: earlier runs' limiter logs and reservations must not be part of this measurement;
    // its keys are deleted after the run (unless --keep), so runs do not pile up in a shared Redis.
    start: (ctx) => startTollgate(ctx, { TOLLGATE_REDIS_URL: settings.redisUrl, TOLLGATE_REDIS_PREFIX: REDIS_PREFIX }),
  },
  {
    id: "c0",
    label: "baseline checkout: TOLLGATE_REDIS_URL",
    needsKey: true,
    tree: "baseline",
    when: () => flags.baseline !== undefined && settings.redisUrl !== undefined,
    start: (ctx) =>
      startTollgate(
        ctx,
        { TOLLGATE_REDIS_URL: settings.redisUrl, TOLLGATE_REDIS_PREFIX: `${REDIS_PREFIX}-baseline` },
        ctx.baseline,
      ),
  },
];
/** This tree's target each baseline target is compared with, round by round. */
const COMPARED = { b0: "b", c0: "c" };

/** Target (c)'s Redis key prefix for this run. */
const REDIS_PREFIX = `bench-${process.pid}-${Date.now()}`;

// ---------------------------------------------------------------------------------------------------------------------
// Targets.

async function startNullServer(ctx) {
  const port = await freePort();
  const child = launch(
    ctx,
    [join(ROOT, "bench/null-check-server.mjs"), `127.0.0.1:${port}`],
    {},
    "null",
    ctx.pin ? 0 : undefined,
  );
  return { address: `127.0.0.1:${port}`, stop: () => stopChild(child), child };
}

/** Tollgate authz on the bench store (or the baseline's); with pinning, on CPU 0 like every server here. */
function startTollgate(ctx, extraEnv, tree) {
  return startAuthz(ctx, extraEnv, ctx.pin ? 0 : undefined, tree);
}

/**
 * The --baseline checkout's build and its own store (SQLite file and data directory in the run's directory), set up
 * by that build's CLI: through its admin API when its CLI is an admin client (it has bench/admin-server.mjs), else as
 * e0b175e's bench set itself up (the CLI writes the store itself and has no per-key limit flags, so the key's limits
 * are written in SQL; older releases, without `credits add`, are not supported). Returns { cli, env, name, secret }.
 */
async function prepareBaseline(ctx, root) {
  const cli = join(root, "dist/cli/main.js");
  if (!existsSync(cli)) throw new Error(`--baseline ${root} has no dist/cli/main.js; build it there first`);
  const dbFile = join(ctx.work, "baseline.db");
  const dataDir = join(ctx.work, "baseline-data");
  const env = { ...ctx.tollgateEnv, TOLLGATE_DATABASE_URL: `sqlite:${dbFile}`, TOLLGATE_DATA_DIR: dataDir };
  const tree = { cli, env, name: "baseline" };
  if (existsSync(join(root, "bench/admin-server.mjs"))) {
    const key = await prepareTollgateStore(ctx, { plainKey: flags["plain-key"], cli, env, dataDir });
    return { ...tree, secret: key.secret };
  }
  // e0b175e's key had per-minute limits only: this tree's must too, or the quotient compares different work.
  if (!flags["plain-key"])
    throw new Error(
      `--baseline ${root} predates daily quotas and spend caps: add --plain-key so both trees decide the same limits`,
    );
  const run = (...args) => {
    const out = spawnSync(process.execPath, [cli, ...args, "--json"], {
      env: { ...process.env, ...env },
      encoding: "utf8",
    });
    if (out.status !== 0) throw new Error(`baseline tollgate ${args.join(" ")} failed (${out.status}): ${out.stderr}`);
    return JSON.parse(out.stdout);
  };
  const account = run("accounts", "create", "--name", "bench", "--plan", "scale");
  const key = run("keys", "create", "--account", account.id, "--name", "bench");
  run("credits", "add", "--account", account.id, "--amount", "1000000");
  const { default: Sqlite } = await import("better-sqlite3");
  const db = new Sqlite(dbFile);
  try {
    const changed = db
      .prepare("UPDATE api_keys SET requests_per_minute = ?, tokens_per_minute = ?, updated_at = ? WHERE id = ?")
      .run(1_000_000_000, 1_000_000_000_000, Date.now(), key.id).changes;
    if (changed !== 1) throw new Error(`could not set limits on the baseline's key ${key.id}`);
  } finally {
    db.close();
  }
  return { ...tree, secret: key.secret };
}

/** Runs one round's h2load against `server`; also returns the server's CPU seconds in the measured period. */
async function measure(ctx, server, requestFile, logFile) {
  let cpuStart;
  let cpuEnd;
  const out = await runH2load(
    {
      address: server.address,
      requestFile,
      logFile,
      settings,
      cpu: ctx.pin ? 1 : undefined,
    },
    { onStart: () => (cpuStart = cpuSeconds(server.child.pid)), onEnd: () => (cpuEnd = cpuSeconds(server.child.pid)) },
  );
  const parsed = parseH2load(out, logFile, settings.connections * settings.streams);
  parsed.serverCpuSeconds = cpuEnd - cpuStart;
  parsed.cpuMicrosPerRequest = (parsed.serverCpuSeconds * 1e6) / parsed.succeeded;
  return parsed;
}

// ---------------------------------------------------------------------------------------------------------------------
// Run.

async function main() {
  const pin = !flags["no-pin"] && canPin();
  const h2load = h2loadVersion();
  const ctx = createBenchContext({ pin, profile: flags.profile });
  const { work } = ctx;
  const targets = TARGETS.filter(
    (t) => (t.when ? t.when() : true) && (!flags.only || flags.only.split(",").includes(t.id)),
  );
  const key = targets.some((t) => t.needsKey)
    ? await prepareTollgateStore(ctx, { plainKey: flags["plain-key"] })
    : undefined;
  const requestWith = checkRequest(key?.secret ?? "tg_" + "0".repeat(40));
  const requestFile = join(work, "check-request.grpc");
  writeFileSync(requestFile, grpcFrame(requestWith.bytes));
  /** The request each target is sent (the baseline's carries its own store's key) and the file h2load sends. */
  const requests = { this: { message: requestWith.message, file: requestFile } };
  if (targets.some((t) => t.tree === "baseline")) {
    ctx.baseline = await prepareBaseline(ctx, flags.baseline);
    const baselineFile = join(work, "check-request-baseline.grpc");
    const request = checkRequest(ctx.baseline.secret);
    writeFileSync(baselineFile, grpcFrame(request.bytes));
    requests.baseline = { message: request.message, file: baselineFile };
  }
  const requestOf = (target) => requests[target.tree ?? "this"];

  const os = await import("node:os");
  const info = {
    date: new Date().toISOString(),
    // The other checkout compared (its dependencies are whatever its node_modules holds: linked from this tree, they are
    // the same, and only source changes are compared).
    baseline: flags.baseline ? { path: flags.baseline, ...treeOf(flags.baseline) } : undefined,
    // The tree measured: dist/ is built from the working tree, so uncommitted changes to tracked files are flagged.
    tree: treeOf(ROOT),
    node: process.version,
    h2load,
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
    console.log(
      `  note: load average ${info.loadAverageAtStart.toFixed(2)} at start; other work shares these cores, so absolute numbers are noisy (the interleaved ratio less so)`,
    );
  }

  const running = [];
  const results = targets.map((t) => ({ id: t.id, label: t.label, rounds: [], problems: [] }));
  try {
    // Start and verify every target first, then interleave the measurements (a b a b …) so background load on a
    // shared machine hits every target alike; an idle target costs nothing while another is measured.
    for (const target of targets) {
      const server = await target.start(ctx);
      running.push(server);
      await verifyServer(server, requestOf(target).message, target.id);
    }
    for (let round = 1; round <= settings.rounds; round++) {
      const line = [];
      // Each compared pair swaps places every other round (b b0, then b0 b): neither tree always follows the other.
      const order = targets.map((target, i) => [target, i]);
      if (round % 2 === 0) {
        for (const [base, own] of Object.entries(COMPARED)) {
          const x = order.findIndex(([t]) => t.id === own);
          const y = order.findIndex(([t]) => t.id === base);
          if (x >= 0 && y >= 0) [order[x], order[y]] = [order[y], order[x]];
        }
      }
      for (const [target, i] of order) {
        const logFile = join(work, `h2load-${target.id}-${round}.log`);
        const parsed = await measure(ctx, running[i], requestOf(target).file, logFile);
        results[i].rounds.push(parsed);
        line.push(
          `${target.id} ${Math.round(parsed.reqPerSec)} req/s ${Math.round(parsed.cpuMicrosPerRequest)} µs cpu/req`,
        );
      }
      console.log(`  round ${round}: ${line.join(", ")}`);
    }
    for (const [i, target] of targets.entries()) {
      assertAllowed(await callCheck(running[i].client, requestOf(target).message), `by (${target.id}) after the run`);
    }
  } finally {
    for (const server of running) {
      server.client?.close();
      await server.stop();
    }
    if (!flags.keep && settings.redisUrl !== undefined) {
      await deleteRedisPrefix(settings.redisUrl, REDIS_PREFIX);
      if (ctx.baseline) await deleteRedisPrefix(settings.redisUrl, `${REDIS_PREFIX}-baseline`);
    }
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
    r.cpuMicrosPerRequest = (sum((x) => x.serverCpuSeconds) * 1e6) / sum((x) => x.succeeded);
    r.succeeded = sum((x) => x.succeeded);
    r.responseBytes = running[i].responseBytes;
    const warmUpShare = (settings.warmUpSeconds + settings.secondsPerRound) / settings.secondsPerRound;
    const checked = h2loadProblems(rounds, r.responseBytes, warmUpShare);
    r.bytesPerResponse = checked.bytesPerResponse;
    r.problems.push(...checked.problems);
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
  console.log(`\n${formatTable(rows)}`);
  console.log(
    "req/s and ratio: medians over rounds; p50/p99: every measured request of every round; cpu µs/req: the server's\n" +
      "user+sys CPU (all threads) per request while measured; cpu ratio: null's cpu/req over this one's (robust to\n" +
      "other load on the machine); resp B: gRPC data bytes per response (an allow, not a deny)",
  );
  for (const r of results) if (r.problems.length) console.log(`WARNING (${r.id}): ${r.problems.join("; ")}`);
  // This tree against the baseline checkout, round by round: each quotient compares measurements seconds apart.
  const compared = results.flatMap((base) => {
    const own = results.find((r) => r.id === COMPARED[base.id]);
    if (!own) return [];
    const per = (f) => own.rounds.map((x, k) => f(x) / f(base.rounds[k]));
    own.vsBaseline = {
      cpuPerCheck: median(per((x) => x.cpuMicrosPerRequest)),
      reqPerSec: median(per((x) => x.reqPerSec)),
    };
    const spread = (xs) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    return [
      [
        `(${own.id}) ÷ (${base.id})`,
        own.vsBaseline.cpuPerCheck.toFixed(2),
        spread(per((x) => x.cpuMicrosPerRequest)),
        own.vsBaseline.reqPerSec.toFixed(2),
        spread(per((x) => x.reqPerSec)),
      ],
    ];
  });
  if (compared.length > 0) {
    console.log(
      `\nthis tree ÷ the baseline checkout (${flags.baseline}), per round (medians over ${settings.rounds} rounds):\n` +
        formatTable([["targets", "cpu µs per Check ÷", "spread", "req/s ÷", "spread"], ...compared]),
    );
  }
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

main().catch((error) => {
  console.error(`\nbench/check: ${error.stack ?? error}`);
  process.exit(1);
});
