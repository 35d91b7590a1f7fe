import { describe, expect, it } from "vitest";
import { createIntake } from "../../../src/dataplane/accesslog/intake.js";
import { recordFromFileLine, UnreadableEntry } from "../../../src/dataplane/accesslog/log-record.js";
import type { MeterInput } from "../../../src/dataplane/accesslog/meter.js";
import { createDecisionVerifier } from "../../../src/dataplane/signing/decision-signature.js";
import { fileLogLine, TEST_SIGNING_SECRET, unsignedAuthzMetadata } from "../../support/als-client.js";
import { billable, recordingLogger } from "./support.js";

const line = (text: string): MeterInput => ({
  source: "file",
  lift: () => recordFromFileLine(text),
  payload: () => text,
});

/** A file-log line whose ext_authz namespace carries no signature (what a forger without the secret writes). */
function unsigned(decisionId: string): MeterInput {
  const parsed = JSON.parse(fileLogLine({ decisionId, accountId: "acct_victim", usage: { prompt: 1, completion: 1 } }));
  parsed.authz = unsignedAuthzMetadata({ decisionId, accountId: "acct_victim" });
  return line(JSON.stringify(parsed));
}

describe("meter intake", () => {
  it("bills signed final entries, counts skips, refuses unsigned ones and dead-letters unreadable ones with a reason", () => {
    const { logger, lines } = recordingLogger();
    let now = 0;
    const intake = createIntake({ verifier: createDecisionVerifier(TEST_SIGNING_SECRET), logger, clock: () => now });
    const broken: MeterInput = {
      source: "als",
      lift: () => {
        throw new UnreadableEntry("invalid HTTPAccessLogEntry: truncated varint");
      },
      payload: () => "AAEC",
    };
    const read = intake.read([
      billable("d1"),
      line(fileLogLine({ accountId: "acct_a" })),
      unsigned("f1"),
      broken,
      unsigned("f2"),
    ]);
    expect(read.events.map((e) => e.decisionId)).toEqual(["d1"]);
    expect(read.origins).toHaveLength(1);
    expect(read).toMatchObject({ skipped: 1, forged: 2 });
    expect(read.deadLetters).toEqual([
      { source: "als", reason: "invalid HTTPAccessLogEntry: truncated varint", payload: "AAEC" },
    ]);
    now = 10_001;
    intake.read([unsigned("f3")]);
    const forgedLines = lines.filter((l) => l.msg.startsWith("access-log entries with an unsigned"));
    // Client-reachable input: a warning at most once per 10 s (counting what it summarises), never an error.
    expect(forgedLines.map((l) => [l.level, l.entries])).toEqual([
      [40, 1],
      [40, 2],
    ]);
  });
});

describe("meter intake: dead letters from unauthenticated input are a bounded sample", () => {
  /** An ALS entry that cannot even be lifted: nothing in it can be authenticated. */
  const junk = (i: number): MeterInput => ({
    source: "als",
    lift: () => {
      throw new UnreadableEntry("invalid HTTPAccessLogEntry: truncated varint");
    },
    payload: () => `junk-${i}`,
  });
  /** A signed entry whose usage namespace is broken (the usage filter's part): authz vouches for it. */
  const signedMalformed = (decisionId: string): MeterInput => {
    const parsed = JSON.parse(fileLogLine({ decisionId, accountId: "acct_a", usage: { prompt: 1, completion: 1 } }));
    parsed.usage.source = "guess";
    const text = JSON.stringify(parsed);
    return { source: "als", lift: () => recordFromFileLine(text), payload: () => text };
  };

  it("keeps 3 per minute of 10,000 unreadable ALS entries, drops the rest, refills next minute, and never bounds signed or file-log ones", () => {
    const { logger, lines } = recordingLogger();
    let now = 1_000;
    const intake = createIntake({
      verifier: createDecisionVerifier(TEST_SIGNING_SECRET),
      logger,
      clock: () => now,
      unsignedDeadLettersPerMinute: 3,
    });
    const flood = intake.read(Array.from({ length: 10_000 }, (_, i) => junk(i)));
    expect(flood.deadLetters.map((d) => d.payload)).toEqual(["junk-0", "junk-1", "junk-2"]);
    expect(flood.dropped).toBe(9_997);

    // Past the sample: signed malformed entries and the operator's own file log are still dead-lettered in full.
    const fileJunk: MeterInput = {
      source: "file",
      lift: () => recordFromFileLine("not json"),
      payload: () => "not json",
    };
    const after = intake.read([signedMalformed("s1"), fileJunk, junk(10_000)]);
    expect(after.deadLetters.map((d) => d.reason)).toEqual([
      'usage.source must be "provider" or "estimate"',
      "line is not JSON",
    ]);
    expect(after.deadLetters[0]!.payload).toContain('"s1"');
    expect(after.dropped).toBe(1);

    now += 60_000;
    expect(intake.read([junk(1), junk(2), junk(3), junk(4)])).toMatchObject({ dropped: 1 });
    const dropLines = lines.filter((l) =>
      l.msg.startsWith("malformed access-log entries without a valid authz signature dropped"),
    );
    // Client-reachable: at most one warn line per 10 s, summarising the count; never an error.
    expect(dropLines.map((l) => [l.level, l.entries])).toEqual([
      [40, 1],
      [40, 9_998],
    ]);
  });
});
