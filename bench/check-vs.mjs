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
    .map((r) => ({ id: r.id, label: r.label, ratio: r.reqPerSec / floor.reqPerSec, cpu: r.cpuMicrosPerRequest }));
}

const samples = new Map(); // "tree|id" -> { label, ratio[], cpu[] }
for (let i = 1; i <= runs; i++) {
  for (const tree of trees) {
    const results = benchOnce(tree);
    for (const r of results) {
      const key = `${tree.name}|${r.id}`;
      if (!samples.has(key)) samples.set(key, { tree: tree.name, id: r.id, label: r.label, ratio: [], cpu: [] });
      samples.get(key).ratio.push(r.ratio);
      samples.get(key).cpu.push(r.cpu);
    }
    console.log(
      `  run ${i}, ${tree.name}: ${results.map((r) => `(${r.id}) ratio ${r.ratio.toFixed(2)}, ${r.cpu.toFixed(0)} µs cpu`).join("; ")}`,
    );
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const spread = (xs, digits) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
const rows = [...samples.values()].sort((x, y) => x.id.localeCompare(y.id) || x.tree.localeCompare(y.tree));
console.log(`\ntarget | tree | ratio to null (median) | spread | cpu µs/Check (median) | spread`);
console.log(`-------|------|------------------------|--------|-----------------------|-------`);
for (const r of rows) {
  console.log(
    `(${r.id}) ${r.label} | ${r.tree} | ${median(r.ratio).toFixed(2)} | ${spread(r.ratio, 2)} | ${median(r.cpu).toFixed(0)} | ${spread(r.cpu, 0)}`,
  );
}
console.log(`\n${runs} runs per tree, alternating (baseline ${trees[0].root}); each ratio is measured within one run.`);
