import { describe, expect, it } from "vitest";
import type { CommitWork } from "../../../src/dataplane/accesslog/commit-work.js";
import { createPoisonIsolator } from "../../../src/dataplane/accesslog/poison-isolator.js";
import { classify, type UsageEvent } from "../../../src/domain/metering.js";
import { billable, fakeLedger, isLedgerDown, LedgerDown, recordingLogger } from "./support.js";

/** Work of n billable events d0..d(n-1), each with its raw entry as origin. */
function work(n: number): CommitWork {
  const inputs = Array.from({ length: n }, (_, i) => billable(`d${i}`));
  const events = inputs.map((input) => {
    const verdict = classify(input.lift());
    if (verdict.kind !== "bill") throw new Error("fixture is not billable");
    return verdict.event;
  });
  return { events, origins: inputs, expired: [], deadLetters: [] };
}

describe("poison isolator", () => {
  it("dead-letters the one entry the ledger refuses and commits its neighbours, in few transactions", async () => {
    const ledger = fakeLedger();
    ledger.poisoned.add("d5");
    const { logger, lines } = recordingLogger();
    const isolator = createPoisonIsolator({ ledger, logger, clock: () => 0, isUnavailable: isLedgerDown });
    const batch = work(16);
    const outcome = await isolator.commit(batch);

    expect(ledger.billed.sort()).toEqual(
      batch.events
        .map((e) => e.decisionId)
        .filter((id) => id !== "d5")
        .sort(),
    );
    expect(outcome).toMatchObject({ billed: 15, deadLettered: 1 });
    expect([...outcome.refused].map((e: UsageEvent) => e.decisionId)).toEqual(["d5"]);
    expect(ledger.deadLetters).toEqual([
      {
        source: "file",
        reason: "ledger refused the entry: value out of range for d5",
        payload: batch.origins[5]!.payload(),
      },
    ]);
    // Bisection: the refused half is halved again, the clean halves commit whole (not one transaction per entry).
    expect(ledger.commits.length).toBeLessThanOrEqual(1 + 2 * Math.log2(16) + 1);
    expect(lines.filter((l) => l.msg === "access-log entry refused by the ledger; dead-lettered")).toHaveLength(1);
  });

  it("isolates several poisoned entries in one batch, each with its own dead letter", async () => {
    const ledger = fakeLedger();
    for (const id of ["d0", "d3", "d7"]) ledger.poisoned.add(id);
    const isolator = createPoisonIsolator({
      ledger,
      logger: recordingLogger().logger,
      clock: () => 0,
      isUnavailable: isLedgerDown,
    });
    const outcome = await isolator.commit(work(8));
    expect(ledger.billed.sort()).toEqual(["d1", "d2", "d4", "d5", "d6"]);
    expect(outcome.billed).toBe(5);
    expect(ledger.deadLetters.map((d) => d.reason)).toEqual(
      ["d0", "d3", "d7"].map((id) => `ledger refused the entry: value out of range for ${id}`),
    );
  });

  it("throws a connection-class failure at once, without splitting or dead-lettering anything", async () => {
    const ledger = fakeLedger();
    ledger.down = true;
    const isolator = createPoisonIsolator({
      ledger,
      logger: recordingLogger().logger,
      clock: () => 0,
      isUnavailable: isLedgerDown,
    });
    await expect(isolator.commit(work(8))).rejects.toBeInstanceOf(LedgerDown);
    expect(ledger.commits).toHaveLength(1);
    expect(ledger.deadLetters).toEqual([]);
  });

  it("stores a refused entry's payload without NUL characters and renders an unrenderable one as a note", async () => {
    const ledger = fakeLedger();
    ledger.poisoned.add("d0").add("d1");
    const isolator = createPoisonIsolator({
      ledger,
      logger: recordingLogger().logger,
      clock: () => 0,
      isUnavailable: isLedgerDown,
    });
    const batch = work(2);
    batch.origins[0] = { source: "als", payload: () => "bad\u0000bytes" };
    batch.origins[1] = {
      source: "als",
      payload: () => {
        throw new Error("gone");
      },
    };
    await isolator.commit(batch);
    expect(ledger.deadLetters.map((d) => d.payload)).toEqual([
      "bad\\u0000bytes",
      JSON.stringify({ unrenderable: "gone" }),
    ]);
  });
});
