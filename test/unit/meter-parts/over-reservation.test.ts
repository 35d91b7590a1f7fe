import { describe, expect, it } from "vitest";
import type { Committed } from "../../../src/dataplane/accesslog/after-commit.js";
import { createOverReservationListener, overReservation } from "../../../src/dataplane/accesslog/over-reservation.js";
import { recordingLogger } from "./support.js";

const commit = (billed: string[], events: Array<[string, bigint, bigint]>): Committed => ({
  result: {
    billed: billed.length,
    alreadyBilled: 0,
    expired: 0,
    deadLettered: 0,
    billedDecisions: billed,
    changes: [],
  },
  events: events.map(
    ([decisionId, cost, reservedNanos]) =>
      ({ decisionId, cost, reservedNanos, accountId: "acct_secret" }) as unknown as Committed["events"][number],
  ),
  counts: { billed: billed.length, alreadyBilled: 0, deadLettered: 0 },
});

describe("usage over the signed reservation", () => {
  it("is more than the margin above the reservation, in exact integers (no rounding at 2^53 and beyond)", () => {
    expect(overReservation(125n, 100n)).toBe(false);
    expect(overReservation(126n, 100n)).toBe(true);
    expect(overReservation(1n, 0n)).toBe(true);
    expect(overReservation(0n, 0n)).toBe(false);
    const big = 2n ** 60n;
    expect(overReservation((big * 5n) / 4n, big)).toBe(false);
    expect(overReservation((big * 5n) / 4n + 1n, big)).toBe(true);
    expect(overReservation(101n, 100n, 0)).toBe(true);
  });

  it("counts first billings only, warns at most once per 10 s with the decision id and a count, never the account", () => {
    const { logger, lines } = recordingLogger();
    let now = 0;
    const totals = { overReservation: 0 };
    const listener = createOverReservationListener({ totals, logger, clock: () => now });
    // d2 is over but was already billed (not in billedDecisions); d3 is within the margin.
    void listener.committed(
      commit(
        ["d1", "d3"],
        [
          ["d1", 1_000n, 100n],
          ["d2", 1_000n, 100n],
          ["d3", 110n, 100n],
        ],
      ),
    );
    void listener.committed(
      commit(
        ["d4", "d5"],
        [
          ["d4", 1_000n, 100n],
          ["d5", 1_000n, 100n],
        ],
      ),
    );
    now = 10_000;
    void listener.committed(commit(["d6"], [["d6", 1_000n, 100n]]));
    expect(totals.overReservation).toBe(4);
    const warned = lines.filter((l) => l.msg.startsWith("billed usage exceeds"));
    expect(warned.map((l) => [l.level, l.decisionId, l.entries])).toEqual([
      [40, "d1", 1],
      [40, "d6", 3],
    ]);
    expect(JSON.stringify(warned)).not.toContain("acct_secret");
  });
});
