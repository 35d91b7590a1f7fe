import { spawn, type ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { acquireLease } from "../../src/adapters/sql/coordination-store.js";
import { migrate, openDatabase } from "../../src/adapters/sql/database.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { chatCheck } from "../support/rate-limits.js";
import { outcome } from "../support/authz-client.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";

/** Blocks this thread (and every plane in it) without spending CPU: an event-loop stall, a GC pause, a frozen VM. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Starts the lease taker (another process) on `url`; resolves once it polls the lease. */
async function startTaker(url: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/security/credit-lease-taker.ts", url], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (chunk) => (out += String(chunk)));
  child.stderr!.on("data", (chunk) => (out += String(chunk)));
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (out.includes("waiting")) {
        clearInterval(poll);
        resolve();
      }
    }, 10);
    child.once("exit", (code) => reject(new Error(`lease taker exited (${code}): ${out}`)));
  });
  return { child, output: () => out };
}

/**
 * Without Redis one authz process admits per database. If the holder stalls longer than the lease TTL, a waiting
 * process takes the lease; the stalled one must not admit when it resumes (both would spend one balance). It refuses
 * as soon as its last heartbeat is older than the lease allows (a timestamp compare per admission, no I/O), and
 * once it learns the lease was taken it admits nothing more and says NOT_SERVING.
 */
describe("a stalled admission process whose lease was taken over admits nothing", () => {
  let taker: ChildProcess | undefined;
  const planes: TestPlane[] = [];
  afterEach(async () => {
    taker?.kill("SIGTERM");
    for (const p of planes.splice(0)) await p.close();
  });

  it("after a stall past the lease TTL while another process took the lease: 503 on every Check, health NOT_SERVING", async () => {
    const target: StoreTarget = sqliteTarget();
    const a = await startTestPlane(target);
    planes.push(a);
    const { secret } = await a.account("pro");
    expect(outcome(await a.authz.check(chatCheck(secret))).allowed).toBe(true);

    const started = await startTaker(target.url);
    taker = started.child;
    // The holder freezes for longer than the lease TTL (6 s); meanwhile the other process takes the lease over.
    stall(7_500);
    const resumed = outcome(await a.authz.check(chatCheck(secret)));
    expect(resumed.allowed).toBe(false);
    expect(resumed.httpStatus).toBe(503);
    expect(resumed.error?.code).toBe("unavailable");

    for (let i = 0; i < 100 && !started.output().includes("taken"); i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(started.output()).toContain("taken from a stalled holder");
    // Its next heartbeat finds the lease gone: it stays out for good (no re-admission once heartbeats would succeed).
    for (let i = 0; i < 100 && !a.logs.join("").includes("single-admission lease lost"); i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(a.logs.join("")).toMatch(/"level":50.*single-admission lease lost/);
    for (let i = 0; i < 3; i++) expect(outcome(await a.authz.check(chatCheck(secret))).httpStatus).toBe(503);
    expect(await a.plane.ready()).toBe(false);
  }, 30_000);
});

describe("the single-admission lease is current only while its heartbeat is fresh", () => {
  it("stops being current TTL minus the margin after the last heartbeat, before a successor can take it", async () => {
    const target = sqliteTarget();
    const db = await openDatabase(target.url);
    await migrate(db);
    const clock = { now: 1_000_000 };
    const lost: string[] = [];
    const options = (holder: string) => ({
      name: "admission",
      holder,
      ttlMs: 6_000,
      clock: () => clock.now,
      onLost: () => void lost.push(holder),
      refusal: (h: string) => `held by ${h}`,
    });
    const first = await acquireLease(db, options("first"));
    expect(first.isCurrent()).toBe(true);
    expect(first.predecessor).toBeUndefined();
    // No heartbeat can land (the fake clock moves, the process does not): current until TTL − TTL/4 = 4.5 s.
    clock.now += 4_400;
    expect(first.isCurrent()).toBe(true);
    clock.now += 200;
    expect(first.isCurrent()).toBe(false);
    // A successor takes it only after the full TTL, knowing from whom, when that one last heartbeat, and when (on its
    // own clock) it took over.
    clock.now += 1_400;
    const second = await acquireLease(db, options("second"));
    expect(second.predecessor).toEqual({ holder: "first", lastHeartbeatAt: 1_000_000, takenOverAt: 1_006_000 });
    expect(second.isCurrent()).toBe(true);
    expect(first.isCurrent()).toBe(false);
    await second.release();
    await first.release();
    await db.knex.destroy();
    await target.cleanup();
  });
});
