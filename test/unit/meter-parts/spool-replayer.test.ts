import { describe, expect, it } from "vitest";
import { createBatcher } from "../../../src/dataplane/accesslog/batcher.js";
import { createPoisonIsolator } from "../../../src/dataplane/accesslog/poison-isolator.js";
import {
  createSpoolReplayer,
  type MeterSpool,
  type SpooledBatch,
} from "../../../src/dataplane/accesslog/spool-replayer.js";
import { classify, type UsageEvent } from "../../../src/domain/metering.js";
import { billable, fakeLedger, isLedgerDown, recordingLogger, until, type FakeLedger } from "./support.js";

/** An in-memory MeterSpool that remembers what was removed and quarantined. */
function memorySpool(initial: SpooledBatch[] = []) {
  let seq = 0;
  const batches = initial.map((batch) => ({ seq: ++seq, batch }));
  const removed: number[] = [];
  const quarantined: number[] = [];
  const spool: MeterSpool = {
    append: (batch) => (batches.push({ seq: ++seq, batch }), seq),
    oldest: () => batches[0],
    remove: (s) => {
      removed.push(s);
      batches.splice(
        batches.findIndex((b) => b.seq === s),
        1,
      );
    },
    quarantine: (s) => {
      quarantined.push(s);
      batches.splice(
        batches.findIndex((b) => b.seq === s),
        1,
      );
    },
    size: () => batches.length,
    close: () => {},
  };
  return { spool, batches, removed, quarantined };
}

/** A spooled batch of the given decisions, as the meter parks one. */
function spooled(...ids: string[]): SpooledBatch {
  const inputs = ids.map((id) => billable(id));
  const events = inputs.map((i) => (classify(i.lift()) as { event: UsageEvent }).event);
  return { events, origins: inputs.map((i) => ({ source: i.source, payload: i.payload() })), deadLetters: [] };
}

function replayerOver(ledger: FakeLedger, spool: MeterSpool) {
  const { logger } = recordingLogger();
  const replayed: string[][] = [];
  const slots = createBatcher<never>({
    maxBatch: 1,
    windowMs: 0,
    concurrency: 1,
    sizeOf: () => 1,
    commit: async () => {},
  });
  const replayer = createSpoolReplayer({
    spool,
    isolator: createPoisonIsolator({ ledger, logger, clock: () => 0, isUnavailable: isLedgerDown }),
    slots,
    isUnavailable: isLedgerDown,
    logger,
    retryMinMs: 2,
    retryMaxMs: 8,
    replayed: async (_outcome, events) => void replayed.push(events.map((e) => e.decisionId)),
  });
  return { replayer, replayed };
}

describe("spool replayer", () => {
  it("replays what a previous run left, oldest first and exactly once, only after the ledger returns", async () => {
    const ledger = fakeLedger();
    ledger.down = true;
    const { spool, removed } = memorySpool([spooled("a1", "a2"), spooled("b1"), spooled("c1", "c2")]);
    const { replayer, replayed } = replayerOver(ledger, spool);
    expect(replayer.pending()).toBe(3);

    await until("the replayer has probed the down ledger a few times", () => ledger.commits.length >= 3);
    expect(replayed).toEqual([]);
    expect(removed).toEqual([]);
    expect(replayer.pending()).toBe(3);

    ledger.down = false;
    await until("the spool is empty", () => replayer.pending() === 0);
    expect(replayed).toEqual([["a1", "a2"], ["b1"], ["c1", "c2"]]);
    expect(removed).toEqual([1, 2, 3]);
    expect(ledger.billed).toEqual(["a1", "a2", "b1", "c1", "c2"]);
    expect(ledger.commits.filter((c) => c.ok).map((c) => c.events)).toEqual([["a1", "a2"], ["b1"], ["c1", "c2"]]);
    replayer.close();
  });

  it("replays a batch parked while running once woken, and dead-letters a poisoned entry instead of quarantining its batch", async () => {
    const ledger = fakeLedger();
    ledger.poisoned.add("p");
    const { spool, quarantined } = memorySpool();
    const { replayer, replayed } = replayerOver(ledger, spool);
    replayer.append(spooled("x", "p", "y"));
    expect(replayer.pending()).toBe(1);
    replayer.wake();
    await until("the spool is empty", () => replayer.pending() === 0);
    expect(replayed).toEqual([["x", "p", "y"]]);
    expect(ledger.billed.sort()).toEqual(["x", "y"]);
    expect(ledger.deadLetters.map((d) => d.reason)).toEqual(["ledger refused the entry: value out of range for p"]);
    expect(quarantined).toEqual([]);
    replayer.close();
  });

  it("waits for a free commit slot instead of adding a transaction beside a running one", async () => {
    const ledger = fakeLedger();
    const { spool } = memorySpool([spooled("s1")]);
    const logger = recordingLogger().logger;
    const slots = createBatcher<never>({
      maxBatch: 1,
      windowMs: 0,
      concurrency: 1,
      sizeOf: () => 1,
      commit: async () => {},
    });
    let release!: () => void;
    // Another commit holds the only slot when the replayer starts over a non-empty spool.
    slots.tryRun(() => new Promise<void>((r) => (release = r)));
    const replayer = createSpoolReplayer({
      spool,
      isolator: createPoisonIsolator({ ledger, logger, clock: () => 0, isUnavailable: isLedgerDown }),
      slots,
      isUnavailable: isLedgerDown,
      logger,
      retryMinMs: 2,
      retryMaxMs: 8,
      replayed: async () => {},
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(ledger.commits).toEqual([]);
    release();
    await until("the spool is empty", () => replayer.pending() === 0);
    expect(ledger.billed).toEqual(["s1"]);
    replayer.close();
  });

  it("stops replaying when closed, leaving what is parked for the next start", async () => {
    const ledger = fakeLedger();
    ledger.down = true;
    const { spool, batches } = memorySpool([spooled("k1")]);
    const { replayer } = replayerOver(ledger, spool);
    replayer.close();
    ledger.down = false;
    await new Promise((r) => setTimeout(r, 30));
    expect(ledger.commits).toEqual([]);
    expect(batches).toHaveLength(1);
  });
});
