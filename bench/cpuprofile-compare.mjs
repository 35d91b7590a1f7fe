#!/usr/bin/env node
// Compares two V8 .cpuprofile files of authz under the same load (from `node bench/check.mjs --baseline DIR --profile`:
// the baseline's and this tree's) per Check, when their Check counts are not known: each function's self time is
// divided by the self time of the four node:internal/http2 functions every served Check calls once (respond,
// processHeaders, mapToHeaders, toHeaderObject), a clock that ticks once per Check in both trees. Prints each tree's
// event-loop work per clock unit (idle excluded) and the functions whose share changed most.
//
//   node bench/cpuprofile-compare.mjs BASELINE.cpuprofile THIS.cpuprofile [--top 30]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "30" } },
  allowPositionals: true,
});
if (positionals.length !== 2) {
  console.error("usage: node bench/cpuprofile-compare.mjs BASELINE.cpuprofile THIS.cpuprofile [--top 30]");
  process.exit(2);
}

/** The functions every served Check calls once, whatever the tree: HTTP/2 headers in and the response out. */
const PER_CHECK = ["respond", "processHeaders", "mapToHeaders", "toHeaderObject"].map((f) => `${f} node:internal`);

/** Self time (µs) by "function file", files shortened to dist/…, a package name or node:internal. */
function selfTimes(file) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const { functionName, url } = byId.get(profile.samples[i]).callFrame;
    const where = url
      .replace(/^.*\/dist\//, "dist/")
      .replace(/^.*\/node_modules\/(@[^/]+\/[^/]+|[^/]+).*$/, "$1")
      .replace(/^node:internal\/.*$/, "node:internal");
    const key = `${functionName} ${where}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  return self;
}

const [base, own] = positionals.map(selfTimes);
const clock = (times) => PER_CHECK.reduce((sum, key) => sum + (times.get(key) ?? 0), 0);
const [baseClock, ownClock] = [clock(base), clock(own)];
if (baseClock === 0 || ownClock === 0) throw new Error("a profile holds no served Check (no HTTP/2 response frames)");
const work = (times, unit) =>
  [...times].filter(([key]) => !key.startsWith("(idle)")).reduce((sum, [, t]) => sum + t, 0) / unit;
const baseWork = work(base, baseClock);
const ownWork = work(own, ownClock);
console.log(
  `event-loop work per clock unit (idle excluded): baseline ${baseWork.toFixed(2)}, this tree ${ownWork.toFixed(2)} ` +
    `(this ÷ baseline ${(ownWork / baseWork).toFixed(3)})\n\nchange  baseline  this  function (per clock unit)`,
);
const rows = [...new Set([...base.keys(), ...own.keys()])]
  .filter((key) => !key.startsWith("(idle)"))
  .map((key) => [key, (base.get(key) ?? 0) / baseClock, (own.get(key) ?? 0) / ownClock]);
rows.sort((x, y) => Math.abs(y[2] - y[1]) - Math.abs(x[2] - x[1]));
for (const [key, b, o] of rows.slice(0, Number(values.top)))
  console.log(`${(o - b).toFixed(3).padStart(6)}  ${b.toFixed(3).padStart(8)}  ${o.toFixed(3).padStart(4)}  ${key}`);
