import { describe, expect, it } from "vitest";
import {
  createAfterCommit,
  createTotalsListener,
  type AfterCommitListener,
  type Committed,
} from "../../../src/dataplane/accesslog/after-commit.js";
import { createMeter, type SpooledBatch } from "../../../src/dataplane/accesslog/meter.js";
import { createSettleWindowsListener } from "../../../src/dataplane/accesslog/settle-windows.js";
import type { CreditReservations } from "../../../src/domain/credits.js";
import type { BalanceChange } from "../../../src/domain/metering.js";
import { billable, fakeLedger, isLedgerDown, recordingLogger, type FakeLedger } from "./support.js";

const verifier = { verify: () => true };

const commitOf = (billedDecisions: string[], events: string[] = billedDecisions): Committed => ({
  result: {
    billed: billedDecisions.length,
    alreadyBilled: 0,
    expired: 0,
    deadLettered: 0,
    billedDecisions,
    changes: [],
  },
  events: events.map(
    (decisionId) =>
      ({
        decisionId,
        keyId: `key_${decisionId}`,
        accountId: "acct_a",
        promptTokens: 10,
        completionTokens: 5,
      }) as Committed["events"][number],
  ),
  counts: { billed: billedDecisions.length, alreadyBilled: 0, deadLettered: 0 },
});

describe("after-commit runner", () => {
  it("calls every listener with the commit, and one that throws (synchronously or not) is a warning, not a failure", async () => {
    const { logger, lines } = recordingLogger();
    const seen: string[] = [];
    const listeners: AfterCommitListener[] = [
      { name: "first", committed: (c) => void seen.push(`first:${c.result.billedDecisions.join()}`) },
      {
        name: "sync thrower",
        committed: () => {
          throw new Error("sync boom");
        },
      },
      { name: "async thrower", committed: async () => Promise.reject(new Error("async boom")) },
      { name: "last", committed: async (c) => void seen.push(`last:${c.counts.billed}`) },
    ];
    await expect(createAfterCommit({ listeners, logger }).run(commitOf(["d1"]))).resolves.toBeUndefined();
    expect(seen).toEqual(["first:d1", "last:1"]);
    const warned = lines.filter((l) => l.msg === "after-commit listener failed; the ledger commit stands");
    expect(warned.map((l) => [l.level, l.listener])).toEqual([
      [40, "sync thrower"],
      [40, "async thrower"],
    ]);
  });

  it("totals add each commit's counts", async () => {
    const totals = { billed: 1, alreadyBilled: 2, deadLettered: 3 };
    const run = createAfterCommit({ listeners: [createTotalsListener(totals)], logger: recordingLogger().logger });
    await run.run({ ...commitOf(["a"]), counts: { billed: 4, alreadyBilled: 5, deadLettered: 6 } });
    expect(totals).toEqual({ billed: 5, alreadyBilled: 7, deadLettered: 9 });
  });

  it("settles each newly billed decision once with its actual tokens, and warns about failed settles at most once per 10 s", async () => {
    const { logger, lines } = recordingLogger();
    let now = 0;
    const settled: Array<{ decisionId: string; actualTokens: number }> = [];
    let failing = false;
    const listener = createSettleWindowsListener({
      limiter: {
        settle: (r) => {
          if (failing) throw new Error("redis down");
          settled.push({ decisionId: r.decisionId, actualTokens: r.actualTokens });
        },
      },
      logger,
      clock: () => now,
    });
    // d2 arrives twice in the commit and d3 was billed earlier (not in billedDecisions): d1 and d2 once each.
    await listener.committed(commitOf(["d1", "d2"], ["d1", "d2", "d2", "d3"]));
    expect(settled).toEqual([
      { decisionId: "d1", actualTokens: 15 },
      { decisionId: "d2", actualTokens: 15 },
    ]);
    failing = true;
    await listener.committed(commitOf(["e1"]));
    now = 5_000;
    await listener.committed(commitOf(["e2"]));
    now = 10_001;
    await listener.committed(commitOf(["e3"]));
    const warned = lines.filter((l) => l.msg.startsWith("rate-limit windows not settled"));
    expect(warned.map((l) => l.unsettled)).toEqual([1, 2]);
  });
});

/** A ledger wrapper that records, at each listener call, whether the ledger already held the decisions. */
function probes(ledger: FakeLedger) {
  const calls: Array<{ listener: string; decisions: string[]; committed: boolean }> = [];
  const credits = {
    committed: async (changes: readonly BalanceChange[]) =>
      void calls.push({
        listener: "credits",
        decisions: changes.map((c) => c.accountId),
        committed: ledger.commits.at(-1)?.ok === true,
      }),
    expired: async () => [],
  } as unknown as CreditReservations;
  const limiter = {
    settle: (r: { decisionId: string }) =>
      void calls.push({
        listener: "limiter",
        decisions: [r.decisionId],
        committed: ledger.billed.includes(r.decisionId),
      }),
  };
  return { calls, credits, limiter };
}

describe("meter: after-commit listeners run after a commit only", () => {
  it("runs them once the ledger holds the billed decisions, never for a commit that failed", async () => {
    const ledger = fakeLedger();
    const { calls, credits, limiter } = probes(ledger);
    const meter = createMeter({
      ledger,
      verifier,
      credits,
      limiter,
      logger: recordingLogger().logger,
      windowMs: 0,
      isUnavailable: isLedgerDown,
    });
    ledger.down = true;
    // No spool: the submit is refused, and nothing after-commit happens.
    await expect(meter.submit([billable("x1")])).rejects.toThrow("connection refused");
    expect(calls).toEqual([]);
    expect(meter.totals).toMatchObject({ billed: 0 });
    ledger.down = false;
    await meter.submit([billable("x2")]);
    expect(calls).toEqual([
      { listener: "limiter", decisions: ["x2"], committed: true },
      { listener: "credits", decisions: [], committed: true },
    ]);
    expect(meter.totals).toMatchObject({ billed: 1 });
    await meter.close();
  });

  it("does not run them for a spooled batch until its replay has committed", async () => {
    const ledger = fakeLedger();
    const { calls, credits, limiter } = probes(ledger);
    const batches: Array<{ seq: number; batch: SpooledBatch }> = [];
    let seq = 0;
    const spool = {
      append: (batch: SpooledBatch) => (batches.push({ seq: ++seq, batch }), seq),
      oldest: () => batches[0],
      remove: (s: number) =>
        void batches.splice(
          batches.findIndex((b) => b.seq === s),
          1,
        ),
      quarantine: () => {},
      size: () => batches.length,
      close: () => {},
    };
    ledger.down = true;
    const meter = createMeter({
      ledger,
      verifier,
      credits,
      limiter,
      logger: recordingLogger().logger,
      windowMs: 0,
      spool,
      isUnavailable: isLedgerDown,
      retryMinMs: 5,
      retryMaxMs: 5,
    });
    expect(await meter.submit([billable("s1")])).toMatchObject({ spooled: 1, billed: 0 });
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toEqual([]);
    ledger.down = false;
    await new Promise((r) => setTimeout(r, 60));
    expect(calls.filter((c) => c.listener === "limiter")).toEqual([
      { listener: "limiter", decisions: ["s1"], committed: true },
    ]);
    expect(meter.totals).toMatchObject({ billed: 1, spooled: 1 });
    await meter.close();
  });
});

describe("meter: after-commit listeners cannot break billing", () => {
  it("answers a submit as billed when the limiter's settle throws synchronously", async () => {
    const ledger = fakeLedger();
    const { logger, lines } = recordingLogger();
    const limiter = {
      settle(): void {
        throw new Error("limiter exploded");
      },
    };
    const meter = createMeter({ ledger, verifier, limiter, logger, windowMs: 0 });
    const counts = await Promise.race([
      meter.submit([billable("d1"), billable("d2")]),
      new Promise<"hung">((r) => setTimeout(() => r("hung"), 1_000)),
    ]);
    expect(counts).toMatchObject({ received: 2, billed: 2 });
    expect(ledger.billed).toEqual(["d1", "d2"]);
    expect(meter.totals).toMatchObject({ billed: 2 });
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    await meter.close();
  });

  it("keeps a replayed spool batch committed exactly once when a listener throws after the replay", async () => {
    const ledger = fakeLedger();
    const { logger } = recordingLogger();
    const credits = {
      committed(): Promise<void> {
        throw new Error("gate exploded synchronously");
      },
      expired: async () => [],
    } as unknown as CreditReservations;
    const limiter = {
      settle(): void {
        throw new Error("limiter exploded");
      },
    };
    const batches: Array<{ seq: number; batch: SpooledBatch }> = [];
    const quarantined: number[] = [];
    let seq = 0;
    const spool = {
      append: (batch: SpooledBatch) => (batches.push({ seq: ++seq, batch }), seq),
      oldest: () => batches[0],
      remove: (s: number) =>
        void batches.splice(
          batches.findIndex((b) => b.seq === s),
          1,
        ),
      quarantine: (s: number) => void quarantined.push(s),
      size: () => batches.length,
      close: () => {},
    };
    ledger.down = true;
    const meter = createMeter({
      ledger,
      verifier,
      credits,
      limiter,
      logger,
      windowMs: 0,
      spool,
      isUnavailable: isLedgerDown,
      retryMinMs: 5,
      retryMaxMs: 5,
    });
    expect(await meter.submit([billable("d1")])).toMatchObject({ spooled: 1 });
    ledger.down = false;
    await new Promise((r) => setTimeout(r, 100));
    expect(ledger.billed).toEqual(["d1"]);
    expect(quarantined).toEqual([]);
    expect(meter.spooled()).toBe(0);
    expect(meter.totals).toMatchObject({ billed: 1, spooled: 1 });
    await meter.close();
  });
});
