import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { haveRedisBinaries } from "../support/redis-cluster.js";

/** Whether `pid` runs (a zombie waiting to be reaped has exited). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
};

/**
 * vitest stops its fork workers with SIGTERM, which ends a Node process without its "exit" handlers: a cluster the
 * helper started must not outlive the process that started it (.ci/run starts nothing it does not stop).
 */
describe.skipIf(!haveRedisBinaries())("the test Redis Cluster helper", () => {
  it("stops every redis-server it started when its process is terminated (SIGTERM)", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/redis-cluster-child.ts"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let pids: number[] = [];
    try {
      pids = await new Promise<number[]>((resolve, reject) => {
        let seen = "";
        child.stdout!.on("data", (chunk) => {
          seen += String(chunk);
          const line = seen.split("\n").find((l) => l.startsWith("["));
          if (line) resolve(JSON.parse(line) as number[]);
        });
        child.once("exit", (code) => reject(new Error(`the child exited (${code}) before its cluster was up`)));
      });
      expect(pids).toHaveLength(6);
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      const deadline = Date.now() + 5000;
      while (pids.some(alive) && Date.now() < deadline) await sleep(50);
      expect(pids.filter(alive)).toEqual([]);
    } finally {
      // Whatever the outcome, this test leaves nothing running.
      for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }, 60_000);
});
