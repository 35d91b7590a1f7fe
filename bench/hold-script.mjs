#!/usr/bin/env node
// bench/hold-script: Redis CPU per Check of the admission (hold) script, this tree's and optionally another
// checkout's, measured in alternating phases against one private redis-server, so the ratio is measured in one run.
//
//   npm run build && node bench/hold-script.mjs [--baseline /path/to/other/checkout] [--keys 1,4,20]
//                                               [--per-turn 20] [--turns 400] [--rounds 4]
//
// Each turn sends --per-turn holds together (one event-loop turn, as Checks arriving together do) spread over --keys
// API keys of one account, so the script runs decide per-turn ÷ keys Checks each (one hot key: 20 per run, as bench/check
// measures under load; 20 keys: one per run). Limits never bind and the balance never runs out, so every hold is
// allowed. Redis CPU is INFO cpu (used_cpu_user + used_cpu_sys) over a phase, divided by its Checks: the script, and
// Redis's own parsing, replies and I/O. Client CPU is this process's (process.cpuUsage) over the same phase: the
// adapter's side of a hold (building the command, ioredis, reading the reply) plus this loop's own small part (ids,
// promises), the same for both trees. Phases alternate ABBA over --rounds; the table gives each tree's median.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { median, positive, ROOT, startPrivateRedis } from "./check-harness.mjs";

const { values: flags } = parseArgs({
  options: {
    baseline: { type: "string" },
    keys: { type: "string", default: "1,4,20" },
    "per-turn": { type: "string", default: "20" },
    turns: { type: "string", default: "400" },
    rounds: { type: "string", default: "4" },
  },
});
const perTurn = positive(flags["per-turn"], "--per-turn");
const turns = positive(flags.turns, "--turns");
const rounds = positive(flags.rounds, "--rounds");
const keyCounts = flags.keys.split(",").map((k) => positive(k, "--keys"));
const trees = [
  ...(flags.baseline ? [{ name: "baseline", root: resolve(flags.baseline) }] : []),
  { name: "this tree", root: ROOT },
];
for (const tree of trees) {
  if (!existsSync(join(tree.root, "dist/adapters/redis/quota.js"))) {
    console.error(`bench/hold-script: ${tree.root} has no dist/; build it first.`);
    process.exit(2);
  }
}

const redisServer = await startPrivateRedis();

try {
  const BALANCE = 10n ** 15n; // never runs out
  for (const [i, tree] of trees.entries()) {
    const base = join(tree.root, "dist/adapters/redis");
    const { createRedisClient, connectRedis } = await import(join(base, "client.js"));
    const { createRedisCreditGate } = await import(join(base, "credit-gate.js"));
    const { createRedisQuota } = await import(join(base, "quota.js"));
    tree.redis = createRedisClient(redisServer.url, { commandTimeoutMs: 5000 });
    if (!(await connectRedis(tree.redis))) throw new Error("bench/hold-script: cannot connect to its redis-server");
    const source = { balances: async (ids) => new Map(ids.map((id) => [id, { balance: BALANCE, version: 1 }])) };
    const prefix = `t${i}`;
    const credits = createRedisCreditGate({
      redis: tree.redis,
      source,
      reservationTtlMs: 600_000,
      prefix: `${prefix}:`,
      maxOpenPerAccount: 10_000_000,
    });
    tree.quota = createRedisQuota({ redis: tree.redis, prefix, credits });
  }

  async function redisCpuMicros() {
    const info = await trees[0].redis.info("cpu");
    const read = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)[1]);
    return (read("used_cpu_user") + read("used_cpu_sys")) * 1e6;
  }

  /** Redis and client CPU µs per Check over `count` turns of one tree. */
  async function phase(tree, keys, count) {
    const before = await redisCpuMicros();
    const client = process.cpuUsage();
    for (let t = 0; t < count; t++) {
      const now = Date.now();
      const holds = [];
      for (let j = 0; j < perTurn; j++) {
        holds.push(
          tree.quota.hold({
            keyId: `key_${keys}_${j % keys}`,
            accountId: "acct_bench",
            decisionId: randomUUID(),
            requestsPerMinute: 1e9,
            tokensPerMinute: 1e12,
            tokens: 300,
            amount: 1000n,
            now,
          }),
        );
      }
      const outcomes = await Promise.all(holds);
      if (!outcomes.every((o) => o.held)) throw new Error(`bench/hold-script: a hold was refused in ${tree.root}`);
    }
    const spent = process.cpuUsage(client);
    return {
      redis: ((await redisCpuMicros()) - before) / (count * perTurn),
      client: (spent.user + spent.system) / (count * perTurn),
    };
  }

  console.log(`bench/hold-script: ${perTurn} holds per turn, ${turns} turns per phase, ${rounds} rounds (ABBA)`);
  const header = ["keys", "Checks per script run"];
  for (const side of ["redis", "client"]) {
    header.push(...trees.map((t) => `${t.name}: ${side} cpu µs/Check (spread)`));
    if (trees.length === 2) header.push(`${side}: this tree ÷ baseline`);
  }
  console.log(`| ${header.join(" | ")} |`);
  console.log(`|${header.map(() => "---").join("|")}|`);
  for (const keys of keyCounts) {
    for (const tree of trees) await phase(tree, keys, Math.ceil(turns / 8)); // warm-up: scripts loaded, JIT warm
    const samples = trees.map(() => ({ redis: [], client: [] }));
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? trees : [...trees].reverse();
      for (const tree of order) {
        const figures = await phase(tree, keys, turns);
        samples[trees.indexOf(tree)].redis.push(figures.redis);
        samples[trees.indexOf(tree)].client.push(figures.client);
      }
    }
    const row = [keys, (perTurn / keys).toFixed(1)];
    for (const side of ["redis", "client"]) {
      const medians = samples.map((s) => median(s[side]));
      row.push(
        ...samples.map(
          (s, i) => `${medians[i].toFixed(1)} (${Math.min(...s[side]).toFixed(1)}–${Math.max(...s[side]).toFixed(1)})`,
        ),
      );
      if (trees.length === 2) row.push((medians[1] / medians[0]).toFixed(2));
    }
    console.log(`| ${row.join(" | ")} |`);
  }
} finally {
  for (const tree of trees) tree.redis?.disconnect();
  await redisServer.stop();
}
