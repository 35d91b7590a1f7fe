#!/usr/bin/env node
// bench/check-vs: this tree's bench/check against another checkout's (an earlier release), run after run in the same
// period, so "did it get slower" is answered by ratios each measured in one run, never by figures from another day.
//
//   npm run build && node bench/check-vs.mjs --baseline /path/to/other/checkout [--runs 3] [--redis URL]
//                                            [--own-args=--plain-key] [-- ARGS]
//
// The baseline checkout must be built (`npm ci && npm run build` there, or node_modules linked from this tree). Each
// run is one full bench/check (its own null server, targets and rounds) of the baseline, then one of this tree,
// alternating --runs times; the table shows per target the median over runs of req/s ratio to the null server and
// CPU µs per Check, with the spread (min-max). Extra arguments after `--` go to both bench/check runs, --own-args only
// to this tree's (flags the baseline does not know).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { median } from "./check-harness.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: flags, positionals: extra } = parseArgs({
  options: {
    baseline: { type: "string" },
    runs: { type: "string", default: "3" },
    redis: { type: "string", default: process.env.TOLLGATE_REDIS_URL },
    // Flags only this tree's bench/check knows (e.g. --plain-key), space-separated.
    "own-args": { type: "string", default: "" },
    help: { type: "boolean", short: "h", default: false },
  },
  allowPositionals: true,
});
if (flags.help || !flags.baseline) {
  console.log(
    readFileSync(fileURLToPath(import.meta.url), "utf8")
      .split("\n")
      .slice(1, 10)
      .join("\n"),
  );
  process.exit(flags.help ? 0 : 2);
}
const trees = [
  { name: "baseline", root: resolve(flags.baseline), args: [] },
  { name: "this tree", root: ROOT, args: flags["own-args"].split(" ").filter(Boolean) },
];
for (const tree of trees) {
  if (!existsSync(join(tree.root, "dist/cli/main.js")) || !existsSync(join(tree.root, "bench/check.mjs"))) {
    console.error(`bench/check-vs: ${tree.root} has no dist/ or bench/check.mjs; build it first.`);
    process.exit(2);
  }
}
const runs = Number(flags.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`bench/check-vs: --runs must be a positive integer (got ${flags.runs})`);
  process.exit(2);
}

/** One bench/check run of a tree: its results JSON (the path is the last "results:" line it prints). */
function benchOnce(tree) {
  const args = [
    join(tree.root, "bench/check.mjs"),
    ...(flags.redis ? ["--redis", flags.redis] : []),
    ...extra,
    ...tree.args,
  ];
  const run = spawnSync(process.execPath, args, {
    cwd: tree.root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const file = /results: (\S+\.json)/.exec(run.stdout)?.[1];
  if (run.status !== 0 || !file) {
    console.error(
      `bench/check-vs: bench/check in ${tree.root} failed (exit ${run.status}):\n${run.stdout.slice(-2000)}`,
    );
    process.exit(1);
  }
  const { results } = JSON.parse(readFileSync(file, "utf8"));
  const floor = results.find((r) => r.id === "a");
  return results
    .filter((r) => r.id !== "a")
    .map((r) => ({
      id: r.id,
      label: r.label,
      ratio: r.reqPerSec / floor.reqPerSec,
      cpuRatio: floor.cpuMicrosPerRequest / r.cpuMicrosPerRequest,
      cpu: r.cpuMicrosPerRequest,
    }));
}

const samples = new Map(); // "tree|id" -> { label, ratio[], cpuRatio[], cpu[] }
/** Per target, this tree's CPU per Check ÷ the baseline's, of the two runs of each pair (adjacent in time). */
const pairs = new Map();
for (let i = 1; i <= runs; i++) {
  // Which tree runs first alternates (ABBA), so a machine slowing down or speeding up favours neither.
  const order = i % 2 === 1 ? trees : [...trees].reverse();
  const cpuOf = new Map();
  for (const tree of order) {
    const results = benchOnce(tree);
    for (const r of results) {
      const key = `${tree.name}|${r.id}`;
      if (!samples.has(key))
        samples.set(key, { tree: tree.name, id: r.id, label: r.label, ratio: [], cpuRatio: [], cpu: [] });
      samples.get(key).ratio.push(r.ratio);
      samples.get(key).cpuRatio.push(r.cpuRatio);
      samples.get(key).cpu.push(r.cpu);
      cpuOf.set(key, r.cpu);
    }
    console.log(
      `  run ${i}, ${tree.name}: ${results.map((r) => `(${r.id}) ratio ${r.ratio.toFixed(2)}, ${r.cpu.toFixed(0)} µs cpu`).join("; ")}`,
    );
  }
  for (const [key, cpu] of cpuOf) {
    const [tree, id] = key.split("|");
    const base = cpuOf.get(`baseline|${id}`);
    if (tree !== "this tree" || base === undefined) continue;
    if (!pairs.has(id)) pairs.set(id, []);
    pairs.get(id).push(cpu / base);
  }
}

const spread = (xs, digits) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
const rows = [...samples.values()].sort((x, y) => x.id.localeCompare(y.id) || x.tree.localeCompare(y.tree));
console.log(
  `\ntarget | tree | ratio to null (median) | spread | cpu ratio to null (median) | spread | cpu µs/Check (median) | spread`,
);
console.log(
  `-------|------|------------------------|--------|----------------------------|--------|-----------------------|-------`,
);
for (const r of rows) {
  console.log(
    `(${r.id}) ${r.label} | ${r.tree} | ${median(r.ratio).toFixed(2)} | ${spread(r.ratio, 2)} | ${median(r.cpuRatio).toFixed(2)} | ${spread(r.cpuRatio, 2)} | ${median(r.cpu).toFixed(0)} | ${spread(r.cpu, 0)}`,
  );
}
console.log(`\ntarget | this tree's cpu µs/Check ÷ the baseline's, run by run (median) | spread`);
console.log(`-------|----------------------------------------------------------------|-------`);
for (const [id, ratios] of [...pairs].sort()) {
  console.log(`(${id}) | ${median(ratios).toFixed(2)} | ${spread(ratios, 2)}`);
}
console.log(`\n${runs} runs per tree, alternating (baseline ${trees[0].root}); each ratio is measured within one run.`);
