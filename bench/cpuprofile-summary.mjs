#!/usr/bin/env node
// Summarises a V8 .cpuprofile (from `node bench/check.mjs --profile`): self time by function and by file/package, and
// inclusive time of the functions named on the command line.
//
//   node bench/cpuprofile-summary.mjs FILE.cpuprofile [--top 30] [functionName ...]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "30" } },
  allowPositionals: true,
});
const [file, ...focus] = positionals;
const profile = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Sample i lasts timeDeltas[i + 1]. Only the load window counts: from the first to the last 100 ms bin in which a
// quarter of the samples have a Check frame (dist/dataplane/) on the stack, so start-up (module compilation),
// readiness polling and shutdown do not dilute the hot path.
const deltas = profile.timeDeltas;
const hot = new Set();
for (const n of profile.nodes) if (n.callFrame.url.includes("/dist/dataplane/")) hot.add(n.id);
const hotMemo = new Map();
const isHot = (id) => {
  if (hotMemo.has(id)) return hotMemo.get(id);
  const value = hot.has(id) || (parent.has(id) && isHot(parent.get(id)));
  hotMemo.set(id, value);
  return value;
};
const at = [];
let clock = 0;
for (let i = 0; i < profile.samples.length; i++) at.push((clock += deltas[i]));
const BIN = 100_000;
const bins = [];
for (let i = 0; i < profile.samples.length; i++) {
  const b = Math.floor(at[i] / BIN);
  bins[b] ??= { hot: 0, all: 0 };
  bins[b].all++;
  if (isHot(profile.samples[i])) bins[b].hot++;
}
const hotBins = bins.map((b, i) => (b && b.hot >= 0.25 * b.all ? i : -1)).filter((i) => i >= 0);
const best = hotBins.length ? [hotBins[0], hotBins[hotBins.length - 1]] : [0, bins.length];
const self = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const b = Math.floor(at[i] / BIN);
  if (b < best[0] || b > best[1]) continue;
  self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (deltas[i + 1] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const idle = [...self]
  .filter(([id]) => ["(idle)", "(program)"].includes(byId.get(id).callFrame.functionName))
  .reduce((a, [, v]) => a + v, 0);
const where = (cf) => {
  const url = cf.url.replace(/^file:\/\//, "");
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.includes("/dist/")) return url.slice(url.indexOf("/dist/") + 1);
  return url || "(native)";
};
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5) + "%";
const top = Number(values.top);

const fnSelf = new Map();
const fileSelf = new Map();
for (const [id, us] of self) {
  const cf = byId.get(id).callFrame;
  const k = `${cf.functionName || "(anonymous)"}  ${where(cf)}:${cf.lineNumber + 1}`;
  fnSelf.set(k, (fnSelf.get(k) ?? 0) + us);
  fileSelf.set(where(cf), (fileSelf.get(where(cf)) ?? 0) + us);
}
console.log(
  `${file}\nload window ${(total / 1e6).toFixed(2)} s of ${(clock / 1e6).toFixed(2)} s sampled; idle+program ${pct(idle)}\n\nself time by file/package:`,
);
for (const [k, v] of [...fileSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
console.log("\nself time by function:");
for (const [k, v] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);

// Inclusive time: a sample counts once for each distinct named function on its stack.
if (focus.length) {
  const inclusive = new Map(focus.map((f) => [f, 0]));
  for (const [id, us] of self) {
    const seen = new Set();
    for (let n = id; n !== undefined; n = parent.get(n)) {
      const name = byId.get(n).callFrame.functionName;
      if (inclusive.has(name) && !seen.has(name)) {
        seen.add(name);
        inclusive.set(name, inclusive.get(name) + us);
      }
    }
  }
  console.log("\ninclusive time:");
  for (const [k, v] of inclusive) console.log(`  ${pct(v)}  ${k}`);
}
