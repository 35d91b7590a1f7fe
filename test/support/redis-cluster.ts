import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRedis, createRedisClient, isCluster } from "../../src/adapters/redis/client.js";
import { freePort } from "./ports.js";

const CI = process.env.CI === "true" || process.env.CI === "1";

/** Whether redis-server and redis-cli are on PATH (the cluster suites start their own servers with them). */
export function haveRedisBinaries(): boolean {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
    execFileSync("redis-cli", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** One redis-server process of a test cluster. */
export interface ClusterNode {
  port: number;
  busPort: number;
  process: ChildProcess;
}

/** A Redis Cluster of this test's own: three masters, three replicas, every process stopped by `stop`. */
export interface TestRedisCluster {
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (every node as a seed). */
  url: string;
  nodes: ClusterNode[];
  /** The node serving `slot` as master right now (asked of the cluster, not of a client's cache). */
  masterOf(slot: number): Promise<ClusterNode>;
  /** SIGKILLs a node and waits for it to exit. */
  kill(node: ClusterNode): Promise<void>;
  /** Resolves once the cluster reports `cluster_state:ok` with `slot` served by a master other than `former`. */
  waitForFailover(slot: number, former: ClusterNode, timeoutMs?: number): Promise<ClusterNode>;
  /** Resolves once `master`'s replica has acknowledged every write the master has (replication offsets agree). */
  waitForReplication(master: ClusterNode, timeoutMs?: number): Promise<void>;
  /** Runs one redis-cli command against a node (its stdout, trimmed). */
  cli(node: ClusterNode, ...args: string[]): string;
  stop(): Promise<void>;
}

/** Every node any cluster of this process started, killed if the process exits without stopping them. */
const running = new Set<ChildProcess>();
const killRunning = () => {
  for (const child of running) child.kill("SIGKILL");
};
process.once("exit", killRunning);
// vitest stops its fork workers with SIGTERM, which ends a Node process without running "exit" handlers: kill the
// nodes, then let the signal end the process as it would have.
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  process.once(signal, () => {
    killRunning();
    process.kill(process.pid, signal);
  });
}

async function startNode(dir: string, port: number, busPort: number): Promise<ClusterNode> {
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--cluster-port",
      String(busPort),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      `nodes-${port}.conf`,
      // A second without its master and a replica takes over: keeps the failover drill short.
      "--cluster-node-timeout",
      "1000",
      "--save",
      "",
      "--appendonly",
      "no",
      // Replicas sync at once instead of after the default 5 s wait for more replicas.
      "--repl-diskless-sync-delay",
      "0",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  running.add(child);
  child.once("exit", () => running.delete(child));
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (chunk) => {
      seen += String(chunk);
      if (seen.includes("Ready to accept connections")) resolve();
    });
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server on ${port} exited (${code}): ${seen}`)));
  });
  return { port, busPort, process: child };
}

async function killNode(node: ClusterNode): Promise<void> {
  const child = node.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts six redis-server processes in cluster mode on free ports in a temporary folder and joins them with
 * `redis-cli --cluster create … --cluster-replicas 1`; resolves once every node reports the cluster ok and every
 * replica is in sync. On any failure every process already started is stopped before the error propagates.
 */
export async function startRedisCluster(): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-redis-cluster-"));
  const nodes: ClusterNode[] = [];
  const cli = (node: ClusterNode, ...args: string[]) =>
    execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(node.port), ...args], {
      encoding: "utf8",
      timeout: 5000,
    }).trim();
  const stop = async () => {
    await Promise.all(nodes.map(killNode));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports = new Set<number>();
    while (ports.size < 12) ports.add(await freePort());
    const list = [...ports];
    for (let i = 0; i < 6; i++) nodes.push(await startNode(dir, list[i]!, list[i + 6]!));
    execFileSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "1", "--cluster-yes"],
      { stdio: "pipe", timeout: 30_000 },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = nodes.every((n) => cli(n, "cluster", "info").includes("cluster_state:ok"));
      const synced = nodes.every((n) => {
        const role = cli(n, "info", "replication");
        return role.includes("role:master")
          ? role.includes("connected_slaves:1")
          : role.includes("master_link_status:up");
      });
      if (ok && synced) break;
      if (Date.now() > deadline) throw new Error("the test Redis Cluster did not become ready within 30 s");
      await sleep(100);
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const masterOf = async (slot: number): Promise<ClusterNode> => {
    for (const node of nodes) {
      if (node.process.exitCode !== null || node.process.signalCode !== null) continue;
      const slots = JSON.parse(
        execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(node.port), "--json", "cluster", "slots"], {
          encoding: "utf8",
          timeout: 5000,
        }),
      ) as Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>;
      const range = slots.find(([from, to]) => from <= slot && slot <= to);
      if (!range) continue;
      const owner = nodes.find((n) => n.port === Number(range[2][1]));
      if (owner) return owner;
    }
    throw new Error(`no live node knows the master of slot ${slot}`);
  };

  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
    nodes,
    masterOf,
    kill: killNode,
    async waitForFailover(slot, former, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const live = nodes.filter((n) => n !== former && n.process.exitCode === null && n.process.signalCode === null);
        try {
          const owner = await masterOf(slot);
          if (owner !== former && live.every((n) => cli(n, "cluster", "info").includes("cluster_state:ok")))
            return owner;
        } catch {
          // not known yet
        }
        if (Date.now() > deadline) throw new Error(`slot ${slot} was not failed over within ${timeoutMs} ms`);
        await sleep(100);
      }
    },
    async waitForReplication(master, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const info = cli(master, "info", "replication");
        const offset = /master_repl_offset:(\d+)/.exec(info)?.[1];
        const replica = /slave0:.*offset=(\d+)/.exec(info)?.[1];
        if (offset !== undefined && replica === offset) return;
        if (Date.now() > deadline)
          throw new Error(`the replica of ${master.port} did not catch up within ${timeoutMs} ms`);
        await sleep(20);
      }
    },
    cli,
    stop,
  };
}

/**
 * Declares a suite that runs against a Redis Cluster the suite starts itself (three masters, three replicas) and
 * stops afterwards. Without redis-server / redis-cli it skips, except under CI, where that is a failure.
 */
export function describeCluster(name: string, fn: (cluster: () => TestRedisCluster) => void): void {
  if (!haveRedisBinaries()) {
    if (CI)
      describe(name, () => {
        it("needs redis-server and redis-cli under CI", () => {
          throw new Error("redis-server / redis-cli are not on PATH; CI must run the Redis Cluster suites");
        });
      });
    else describe.skip(`${name} (redis-server / redis-cli not on PATH)`, () => fn(() => undefined as never));
    return;
  }
  describe(name, () => {
    let cluster: TestRedisCluster | undefined;
    let starting: Promise<TestRedisCluster> | undefined;
    beforeAll(async () => {
      starting = startRedisCluster();
      cluster = await starting;
    }, 60_000);
    afterAll(async () => {
      // A start that outlived beforeAll's timeout is still stopped once it is up (or has failed and stopped itself).
      await (cluster ?? (await starting?.catch(() => undefined)))?.stop();
    });
    fn(() => {
      if (!cluster) throw new Error("the test Redis Cluster is not running");
      return cluster;
    });
  });
}

/**
 * A hot-path client (createRedisClient, as serve opens it) of the suite's cluster: connected before the suite's tests,
 * every key under `prefix` deleted and the connection closed afterwards. Call inside a describeCluster.
 */
export function suiteRedisCluster(cluster: () => TestRedisCluster, prefix: string): () => Cluster {
  let client: Cluster | undefined;
  beforeAll(async () => {
    const connection = createRedisClient(cluster().url, { commandTimeoutMs: 5000 });
    if (!isCluster(connection)) throw new Error("a redis+cluster:// URL must open a Cluster client");
    client = connection;
    expect(await connectRedis(client)).toBe(true);
  });
  afterAll(async () => {
    if (!client) return;
    try {
      for (const node of client.nodes("master")) {
        const stale = await node.keys(`${prefix}*`);
        // One DEL per key: a multi-key DEL must stay in one slot.
        await Promise.all(stale.map((key) => node.del(key)));
      }
    } finally {
      client.disconnect();
    }
  });
  return () => {
    if (!client) throw new Error("the suite's cluster client is not connected");
    return client;
  };
}
