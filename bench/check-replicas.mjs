#!/usr/bin/env node
// bench/check-replicas: does Check throughput add up when authz runs as several processes on one Redis? Measures one
// tollgate authz process, then two on the same Redis and store (each driven by its own h2load, started together), in
// interleaved rounds, and reports per configuration: total and per-process req/s, each process's CPU µs per Check
// (/proc), Redis CPU µs per Check (INFO cpu) and per script run (INFO commandstats), and how busy the machine's cores
// were (/proc/stat), so the point where cores, not coordination, limit the total is visible. See bench/README.md.
//
//   npm run build && node bench/check-replicas.mjs [--redis redis://127.0.0.1:6379 | --private-redis] [--duration 12]
//                                                  [--rounds 3] [--warm-up 1] [--connections 2] [--streams 32]
//                                                  [--keys 1] [--pin] [--keep]
//
// --duration is the measured seconds per configuration, split over --rounds (one two one two …), each after its own
// --warm-up; --connections and --streams are per h2load (one h2load per authz process). --private-redis starts a
// redis-server of its own on a free port (no other client's commands in its INFO figures); otherwise --redis, or
// TOLLGATE_REDIS_URL, or redis://127.0.0.1:6379. --keys N spreads the load over N API keys of one account (an h2load
// per key and process, each with --connections and --streams): the hold script decides one key's Checks of one
// event-loop turn in one run, so one key under load gets large runs and many keys get runs of one or two.
// No process is pinned unless --pin (then: one authz on cpu 0 and its h2load on cpu 1; two authz on cpu 0 and cpu 1
// with the h2loads anywhere). On a 2-core machine shared with other work, pinning put the second authz on the core the
// h2loads and the other work crowded onto, and its CPU per Check read far above the first's; unpinned, they read alike.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import {
  assertAllowed,
  callCheck,
  canPin,
  cpuSeconds,
  createBenchContext,
  deleteRedisPrefix,
  formatTable,
  h2loadProblems,
  h2loadVersion,
  LOAD_OPTIONS,
  loadSettings,
  median,
  positive,
  parseH2load,
  prepareTollgateStore,
  printUsage,
  ROOT,
  runH2load,
  startAuthz,
  startPrivateRedis,
  verifyServer,
} from "./check-harness.mjs";

const { checkRequest, grpcFrame } = await import("./check-request.mjs");

const { values: flags } = parseArgs({
  options: {
    ...LOAD_OPTIONS,
    redis: { type: "string", default: process.env.TOLLGATE_REDIS_URL || "redis://127.0.0.1:6379" },
    "private-redis": { type: "boolean", default: false },
    keys: { type: "string", default: "1" },
    pin: { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) printUsage(import.meta.url);
const settings = { ...loadSettings(flags), keys: positive(flags.keys, "--keys") };
const CPUS = os.cpus().length;
/** Both processes' Redis key prefix for this run (deleted afterwards unless --keep). */
const REDIS_PREFIX = `bench-replicas-${process.pid}-${Date.now()}`;
/** The commands a script run arrives as (ioredis's defineCommand sends EVALSHA, EVAL after a Redis restart). */
const SCRIPT_COMMANDS = ["evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"];
/** Relative change in CPU per Check still read as "flat": rounds on a shared 2-core machine differ by about this. */
const FLAT = 0.15;

/**
 * The configurations, in the order each round runs them: how many authz processes take load, and where each
 * process and h2load is pinned (CPU numbers; undefined: anywhere). Redis is never pinned by this bench.
 */
const CONFIGS = [
  { id: "one", processes: 1, authzCpus: [0], h2loadCpu: 1, pinning: "authz on cpu 0, h2load on cpu 1" },
  {
    id: "two",
    processes: 2,
    authzCpus: [0, 1],
    h2loadCpu: undefined,
    pinning: "authz #1 on cpu 0, authz #2 on cpu 1, both h2loads unpinned",
  },
];

// ---------------------------------------------------------------------------------------------------------------------
// Figures from outside the authz processes: Redis's INFO and the machine's /proc/stat.

/** Redis's own CPU seconds (all its threads) and its script commands' calls and µs so far. */
async function redisSnapshot(redis) {
  const info = await redis.info("all");
  const field = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0);
  let calls = 0;
  let usec = 0;
  for (const command of SCRIPT_COMMANDS) {
    const m = new RegExp(`^cmdstat_${command}:calls=(\\d+),usec=(\\d+)`, "m").exec(info);
    if (m) [calls, usec] = [calls + Number(m[1]), usec + Number(m[2])];
  }
  return { cpu: field("used_cpu_user") + field("used_cpu_sys"), scriptCalls: calls, scriptUsec: usec };
}

/** The machine's busy and total CPU time so far (clock ticks over all CPUs), from the first line of /proc/stat. */
function machineSnapshot() {
  try {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync("/proc/stat", "utf8")
      .split("\n")[0]
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return undefined;
  }
}

/** Pins every thread of a running process to `cpu` (or lets it run anywhere again); false where taskset fails. */
function pinProcess(pid, cpu) {
  const list = cpu === undefined ? `0-${CPUS - 1}` : String(cpu);
  return spawnSync("taskset", ["-a", "-p", "-c", list, String(pid)], { stdio: "ignore" }).status === 0;
}

// ---------------------------------------------------------------------------------------------------------------------
// One measurement: every process of a configuration under its own h2load, started together.

/**
 * Runs one h2load per server and key at once. Per process: its CPU over its first h2load's measured period, and its
 * h2loads' CPU over theirs.
 * Redis and machine figures: over the first h2load's measured period (the others start within milliseconds of it), so
 * they are turned into rates and divided by the total rate of Checks.
 */
async function measureConfig(ctx, config, servers, redis, requestFiles, round) {
  const shared = {};
  const runs = servers.map((server, i) =>
    Promise.all(
      requestFiles.map((requestFile, k) => {
        const logFile = join(ctx.work, `h2load-${config.id}-${round}-${i}-${k}.log`);
        const marks = {};
        const mark = (which) => (h2loadPid) => {
          const at = performance.now();
          marks[which] = { at, h2load: cpuSeconds(h2loadPid), authz: k === 0 ? cpuSeconds(server.child.pid) : 0 };
          if (i === 0 && k === 0) shared[which] = { at, machine: machineSnapshot(), redis: redisSnapshot(redis) };
        };
        return runH2load(
          {
            address: server.address,
            requestFile,
            logFile,
            settings,
            cpu: ctx.pin ? config.h2loadCpu : undefined,
          },
          { onStart: mark("start"), onEnd: mark("end") },
        ).then((out) => ({ ...parseH2load(out, logFile, settings.connections * settings.streams), marks }));
      }),
    ),
  );
  // Per process: the sum over its h2loads (one per key), its CPU over the first one's measured period.
  const processes = (await Promise.all(runs)).map((perKey) => {
    const sum = (f) => perKey.reduce((acc, x) => acc + f(x), 0);
    const cores = ({ marks: { start, end } }, f) => (f(end) - f(start)) / ((end.at - start.at) / 1000);
    const { start, end } = perKey[0].marks;
    const authzCpuSeconds = end.authz - start.authz;
    const succeeded = sum((x) => x.succeeded);
    return {
      reqPerSec: sum((x) => x.reqPerSec),
      ...Object.fromEntries(
        ["succeeded", "failed", "errored", "timeout", "non200", "dataBytes"].map((f) => [f, sum((x) => x[f])]),
      ),
      authzCpuSeconds,
      authzCpuMicrosPerCheck: (authzCpuSeconds * 1e6) / succeeded,
      authzCores: cores(perKey[0], (m) => m.authz),
      h2loadCores: sum((x) => cores(x, (m) => m.h2load)),
    };
  });
  const seconds = (shared.end.at - shared.start.at) / 1000;
  const [redisStart, redisEnd] = await Promise.all([shared.start.redis, shared.end.redis]);
  const reqPerSec = processes.reduce((sum, p) => sum + p.reqPerSec, 0);
  const checks = reqPerSec * seconds;
  const scriptCalls = redisEnd.scriptCalls - redisStart.scriptCalls;
  const machine =
    shared.start.machine && shared.end.machine
      ? ((shared.end.machine.busy - shared.start.machine.busy) /
          (shared.end.machine.total - shared.start.machine.total)) *
        CPUS
      : undefined;
  const ours =
    processes.reduce((sum, p) => sum + p.authzCores + p.h2loadCores, 0) + (redisEnd.cpu - redisStart.cpu) / seconds;
  return {
    reqPerSec,
    processes,
    seconds,
    redisCpuMicrosPerCheck: ((redisEnd.cpu - redisStart.cpu) * 1e6) / checks,
    redisCores: (redisEnd.cpu - redisStart.cpu) / seconds,
    scriptRunsPerCheck: scriptCalls / checks,
    scriptMicrosPerRun: (redisEnd.scriptUsec - redisStart.scriptUsec) / scriptCalls,
    scriptMicrosPerCheck: (redisEnd.scriptUsec - redisStart.scriptUsec) / checks,
    machineCoresBusy: machine,
    // Whatever else ran on the machine meanwhile (other work, the kernel's share not charged to a process).
    otherCores: machine === undefined ? undefined : machine - ours,
  };
}

/** Medians over rounds, and CPU per Check over all rounds' Checks of each process. */
function summarise(config, rounds, servers) {
  const med = (f) => median(rounds.map(f));
  const perProcess = servers.map((_, i) => {
    const own = rounds.map((r) => r.processes[i]);
    const succeeded = own.reduce((sum, p) => sum + p.succeeded, 0);
    const cpu = own.reduce((sum, p) => sum + p.authzCpuSeconds, 0);
    return {
      reqPerSec: median(own.map((p) => p.reqPerSec)),
      authzCpuMicrosPerCheck: (cpu * 1e6) / succeeded,
      authzCores: median(own.map((p) => p.authzCores)),
      h2loadCores: median(own.map((p) => p.h2loadCores)),
      ...h2loadProblems(
        own,
        servers[i].responseBytes,
        (settings.warmUpSeconds + settings.secondsPerRound) / settings.secondsPerRound,
      ),
    };
  });
  return {
    id: config.id,
    processes: config.processes,
    reqPerSec: med((r) => r.reqPerSec),
    perProcess,
    authzCpuMicrosPerCheck: median(perProcess.map((p) => p.authzCpuMicrosPerCheck)),
    redisCpuMicrosPerCheck: med((r) => r.redisCpuMicrosPerCheck),
    redisCores: med((r) => r.redisCores),
    scriptRunsPerCheck: med((r) => r.scriptRunsPerCheck),
    scriptMicrosPerRun: med((r) => r.scriptMicrosPerRun),
    scriptMicrosPerCheck: med((r) => r.scriptMicrosPerCheck),
    machineCoresBusy: med((r) => r.machineCoresBusy ?? Number.NaN),
    otherCores: med((r) => r.otherCores ?? Number.NaN),
    rounds,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Report.

function printTable(results) {
  const fixed = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
  const rows = [
    [
      "config",
      "total req/s",
      "per process req/s",
      "authz cpu µs/Check",
      "authz cores",
      "redis cpu µs/Check",
      "script µs/run",
      "Checks/run",
      "redis cores",
      "h2load cores",
      "other cores",
      `busy cores of ${CPUS}`,
    ],
    ...results.map((r) => [
      `${r.processes} authz (${r.id})`,
      fixed(r.reqPerSec),
      r.perProcess.map((p) => fixed(p.reqPerSec)).join(" + "),
      r.perProcess.map((p) => fixed(p.authzCpuMicrosPerCheck)).join(" / "),
      r.perProcess.map((p) => fixed(p.authzCores, 2)).join(" + "),
      fixed(r.redisCpuMicrosPerCheck, 1),
      fixed(r.scriptMicrosPerRun, 1),
      fixed(1 / r.scriptRunsPerCheck, 1),
      fixed(r.redisCores, 2),
      fixed(
        r.perProcess.reduce((sum, p) => sum + p.h2loadCores, 0),
        2,
      ),
      fixed(r.otherCores, 2),
      fixed(r.machineCoresBusy, 2),
    ]),
  ];
  console.log(`\n${formatTable(rows)}`);
  console.log(
    "req/s and cores: medians over rounds; authz cpu µs/Check: each process's user+sys CPU (/proc) over its Checks in\n" +
      "all rounds; redis cpu µs/Check: INFO used_cpu_user+used_cpu_sys over the Checks of all processes; script µs/run:\n" +
      "INFO commandstats usec per EVALSHA (the hold script, which decides every Check of one key that arrived in the same\n" +
      "event-loop turn of one process: Checks/run); busy cores: the whole machine's, from /proc/stat; other cores: busy\n" +
      "cores minus this bench's processes (authz, h2load, Redis): other work on the machine",
  );
}

/** The conclusion the figures support, in words. */
function printConclusion(one, two) {
  const relative = (a, b) => b / a - 1;
  const change = (r) =>
    `${r >= 0 ? "+" : ""}${(r * 100).toFixed(0)}%, ${Math.abs(r) <= FLAT ? "flat" : r > 0 ? "grew" : "fell"}`;
  const authzChange = relative(one.authzCpuMicrosPerCheck, two.authzCpuMicrosPerCheck);
  const redisChange = relative(one.redisCpuMicrosPerCheck, two.redisCpuMicrosPerCheck);
  const capacityPerCore = 1e6 / two.authzCpuMicrosPerCheck;
  const redisCeiling = 1e6 / two.redisCpuMicrosPerCheck;
  const h2loadCores = two.perProcess.reduce((sum, p) => sum + p.h2loadCores, 0);
  const authzCores = two.perProcess.reduce((sum, p) => sum + p.authzCores, 0);
  const lines = [
    `authz CPU per Check: ${one.authzCpuMicrosPerCheck.toFixed(0)} µs with one process, ${two.authzCpuMicrosPerCheck.toFixed(0)} µs with two (${change(authzChange)})`,
    `Redis CPU per Check: ${one.redisCpuMicrosPerCheck.toFixed(1)} µs with one, ${two.redisCpuMicrosPerCheck.toFixed(1)} µs with two (${change(redisChange)}); ` +
      `${(1 / one.scriptRunsPerCheck).toFixed(1)} → ${(1 / two.scriptRunsPerCheck).toFixed(1)} Checks per script run`,
    `throughput: ${one.reqPerSec.toFixed(0)} req/s with one process, ${two.reqPerSec.toFixed(0)} req/s with two (×${(two.reqPerSec / one.reqPerSec).toFixed(2)})`,
    `sum of CPU-bound capacity: ${capacityPerCore.toFixed(0)} Checks/s per authz core at two processes' CPU per Check, so ` +
      `N processes on N cores of their own ≈ N × ${capacityPerCore.toFixed(0)}; one Redis thread at ${two.redisCpuMicrosPerCheck.toFixed(1)} µs/Check ≈ ${redisCeiling.toFixed(0)} Checks/s`,
    `the machine with two processes: ${two.machineCoresBusy.toFixed(2)} of ${CPUS} cores busy (authz ${authzCores.toFixed(2)}, ` +
      `h2load ${h2loadCores.toFixed(2)}, Redis ${two.redisCores.toFixed(2)}, other work ${two.otherCores.toFixed(2)})`,
  ];
  // What the cores allow at the measured CPU per Check of everything this bench runs (authz, h2load, Redis).
  const benchMicrosPerCheck = ((authzCores + h2loadCores + two.redisCores) * 1e6) / two.reqPerSec;
  lines.push(
    `${CPUS} cores at ${benchMicrosPerCheck.toFixed(0)} µs of CPU per Check (authz + h2load + Redis) allow ≈ ${((CPUS * 1e6) / benchMicrosPerCheck).toFixed(0)} req/s; ` +
      `two processes reached ${two.reqPerSec.toFixed(0)} (${((two.reqPerSec * benchMicrosPerCheck) / (CPUS * 1e4)).toFixed(0)}%)`,
  );
  const saturated = two.machineCoresBusy >= 0.9 * CPUS;
  if (Math.abs(authzChange) <= FLAT && Math.abs(redisChange) <= FLAT)
    lines.push(
      `conclusion: CPU per Check stayed flat (no coordination penalty), so throughput adds up until cores run out; ` +
        (saturated ? `here the ${CPUS} cores ran out` : `the cores were not saturated here`),
    );
  else if (Math.abs(redisChange) <= FLAT)
    lines.push(
      `conclusion: Redis CPU per Check stayed flat (the processes cost each other no Redis work), authz CPU per Check ` +
        `${authzChange > 0 ? "grew" : "fell"} ${Math.abs(authzChange * 100).toFixed(0)}% with ${CPUS} cores shared by two authz, their h2loads, Redis and other work` +
        (saturated ? `; the limit was the ${CPUS} cores` : ""),
    );
  else lines.push(`conclusion: Redis CPU per Check changed by more than ${FLAT * 100}%; look at the rounds`);
  console.log(`\n${lines.join("\n")}`);
}

// ---------------------------------------------------------------------------------------------------------------------
// Run.

async function main() {
  const pin = flags.pin && canPin();
  const h2load = h2loadVersion();
  const privateRedis = flags["private-redis"] ? await startPrivateRedis() : undefined;
  const redisUrl = privateRedis?.url ?? flags.redis;
  const ctx = createBenchContext({ pin, profile: false });
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const servers = [];
  const rounds = new Map(CONFIGS.map((c) => [c.id, []]));
  let info;
  try {
    await redis.connect();
    const clientsBefore = Number(/^connected_clients:(\d+)/m.exec(await redis.info("clients"))?.[1]);
    const { secrets } = await prepareTollgateStore(ctx, { keys: settings.keys });
    const request = checkRequest(secrets[0]);
    const requestFiles = secrets.map((secret, k) => {
      const file = join(ctx.work, `check-request-${k}.grpc`);
      writeFileSync(file, grpcFrame(checkRequest(secret).bytes));
      return file;
    });
    info = {
      date: new Date().toISOString(),
      node: process.version,
      h2load,
      cpus: CPUS,
      loadAverageAtStart: os.loadavg()[0],
      redis: privateRedis ? "private redis-server (started by this bench)" : redisUrl,
      otherRedisClientsAtStart: clientsBefore - 1,
      pinned: pin ? Object.fromEntries(CONFIGS.map((c) => [c.id, c.pinning])) : "no",
      connections: settings.connections,
      streams: settings.streams,
      keys: settings.keys,
      rounds: settings.rounds,
      secondsPerRound: settings.secondsPerRound,
      warmUpSeconds: settings.warmUpSeconds,
    };
    console.log(
      `bench/check-replicas: ${info.node}, ${info.h2load}, ${CPUS} cpus; Redis: ${info.redis}` +
        (privateRedis ? "" : ` (${info.otherRedisClientsAtStart} other clients connected at start)`) +
        `\n  per authz process: ${settings.keys === 1 ? "h2load" : `${settings.keys} h2loads (one per API key), each`} -c ${settings.connections} -m ${settings.streams} -t 1; ` +
        `${settings.rounds} interleaved rounds × (${settings.warmUpSeconds}s warm-up + ${settings.secondsPerRound}s measured) per configuration\n` +
        `  pinning: ${pin ? CONFIGS.map((c) => `${c.processes} authz: ${c.pinning}`).join("; ") : "none"}; Redis unpinned`,
    );
    if (info.loadAverageAtStart > 0.5)
      console.log(`  note: load average ${info.loadAverageAtStart.toFixed(2)} at start; other work shares these cores`);

    // Both processes share the store and the Redis prefix: the second one admits against the same key, balance and
    // reservations, as replicas behind one Envoy do.
    const env = { TOLLGATE_REDIS_URL: redisUrl, TOLLGATE_REDIS_PREFIX: REDIS_PREFIX };
    for (let i = 0; i < 2; i++) {
      const server = await startAuthz(ctx, env, undefined);
      servers.push(server);
      await verifyServer(server, request.message, `authz #${i + 1}`);
    }
    for (let round = 1; round <= settings.rounds; round++) {
      const line = [];
      for (const config of CONFIGS) {
        for (const [i, server] of servers.entries())
          if (pin && !pinProcess(server.child.pid, config.authzCpus[i]))
            throw new Error(`taskset could not pin authz #${i + 1} (pid ${server.child.pid}); run without --pin`);
        const result = await measureConfig(ctx, config, servers.slice(0, config.processes), redis, requestFiles, round);
        rounds.get(config.id).push(result);
        line.push(
          `${config.processes} authz ${Math.round(result.reqPerSec)} req/s (${result.processes.map((p) => Math.round(p.authzCpuMicrosPerCheck)).join("/")} µs cpu/Check, redis ${result.redisCpuMicrosPerCheck.toFixed(1)})`,
        );
      }
      console.log(`  round ${round}: ${line.join("; ")}`);
    }
    for (const [i, server] of servers.entries())
      assertAllowed(await callCheck(server.client, request.message), `by authz #${i + 1} after the run`);
  } finally {
    for (const server of servers) {
      server.client?.close();
      await server.stop();
    }
    if (!flags.keep && !privateRedis) await deleteRedisPrefix(redisUrl, REDIS_PREFIX);
    redis.disconnect();
    await privateRedis?.stop();
    if (!flags.keep) rmSync(ctx.work, { recursive: true, force: true });
    else console.log(`  kept ${ctx.work}`);
  }

  const results = CONFIGS.map((c) => summarise(c, rounds.get(c.id), servers.slice(0, c.processes)));
  printTable(results);
  for (const r of results)
    for (const [i, p] of r.perProcess.entries())
      if (p.problems.length) console.log(`WARNING (${r.id}, authz #${i + 1}): ${p.problems.join("; ")}`);
  printConclusion(results[0], results[1]);

  const outDir = join(ROOT, "bench/results");
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, `check-replicas-${info.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(outFile, `${JSON.stringify({ settings: info, results }, null, 2)}\n`);
  console.log(`results: ${outFile} (git-ignored)`);
}

main().catch((error) => {
  console.error(`\nbench/check-replicas: ${error.stack ?? error}`);
  process.exit(1);
});
