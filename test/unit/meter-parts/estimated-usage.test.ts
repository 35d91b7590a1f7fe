// Estimated usage is billed (never dropped) and counted by why: the usage filter's estimate_reason, or the meter's
// own when the filter said nothing, so an operator sees a provider that compresses despite identity.
import { describe, expect, it } from "vitest";
import type { Committed } from "../../../src/dataplane/accesslog/after-commit.js";
import { createEstimatedUsageListener } from "../../../src/dataplane/accesslog/estimated-usage.js";
import { recordFromFileLine } from "../../../src/dataplane/accesslog/log-record.js";
import { classify, ESTIMATE_REASONS, type UsageEvent } from "../../../src/domain/metering.js";
import { createMetrics } from "../../../src/observability/metrics.js";
import { fileLogLine } from "../../support/als-client.js";
import { recordingLogger } from "./support.js";

/** Classifies a file-log line whose usage namespace is replaced by `usage` (null: the filter wrote nothing). */
function billed(usage: Record<string, unknown> | null): UsageEvent {
  const line = JSON.parse(fileLogLine({ accountId: "acct_a", decisionId: "d1", usage: { prompt: 10, completion: 5 } }));
  line.usage = usage;
  const verdict = classify(recordFromFileLine(JSON.stringify(line)));
  if (verdict.kind !== "bill") throw new Error(`not billed: ${JSON.stringify(verdict)}`);
  return verdict.event;
}

const USAGE = { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 0, reasoning_tokens: 0 };

describe("classify: why a bill is an estimate", () => {
  it("takes the usage filter's reason, and bills a compressed response as an estimate", () => {
    const e = billed({ ...USAGE, source: "estimate", complete: true, estimate_reason: "compressed" });
    expect(e).toMatchObject({ estimated: true, estimateReason: "compressed", promptTokens: 10, completionTokens: 5 });
    for (const reason of ["cut_short", "too_large", "unreadable", "no_usage"])
      expect(billed({ ...USAGE, source: "estimate", complete: true, estimate_reason: reason }).estimateReason).toBe(
        reason,
      );
  });

  it("has no reason when the provider's usage was read whole", () => {
    const e = billed({ ...USAGE, source: "provider", complete: true, estimate_reason: "" });
    expect(e.estimated).toBe(false);
    expect(e.estimateReason).toBeUndefined();
  });

  it("names a reason when the filter gave none (an older filter) or one it does not know, and still bills", () => {
    expect(billed({ ...USAGE, source: "provider", complete: false }).estimateReason).toBe("cut_short");
    expect(billed({ ...USAGE, source: "estimate", complete: true }).estimateReason).toBe("unspecified");
    const odd = billed({ ...USAGE, source: "estimate", complete: true, estimate_reason: "x".repeat(300) });
    expect(odd).toMatchObject({ estimated: true, estimateReason: "unspecified" });
    expect(billed({ ...USAGE, source: "estimate", complete: true, estimate_reason: 7 }).estimateReason).toBe(
      "unspecified",
    );
  });

  it("an entry without usage metadata (the upstream never answered) is billed at zero, reason no_usage_metadata", () => {
    expect(billed(null)).toMatchObject({ estimated: true, estimateReason: "no_usage_metadata", completionTokens: 0 });
  });
});

const commit = (billedIds: string[], events: Array<Partial<UsageEvent>>): Committed => ({
  result: {
    billed: billedIds.length,
    alreadyBilled: 0,
    expired: 0,
    deadLettered: 0,
    billedDecisions: billedIds,
    changes: [],
  },
  events: events.map((e) => ({ provider: "openai", accountId: "acct_secret", ...e }) as UsageEvent),
  counts: { billed: billedIds.length, alreadyBilled: 0, deadLettered: 0 },
});

describe("estimated-usage listener and metric", () => {
  it("counts first billings by reason, warns about compressed responses at most once per 10 s, never naming the account", () => {
    const { logger, lines } = recordingLogger();
    let now = 0;
    const totals = { estimated: Object.fromEntries(ESTIMATE_REASONS.map((r) => [r, 0])) as Record<string, number> };
    const listener = createEstimatedUsageListener({ totals, logger, clock: () => now });
    void listener.committed(
      commit(
        ["d1", "d3", "d4", "d5"],
        [
          { decisionId: "d1", estimated: true, estimateReason: "compressed" },
          // d2 was already billed: not a first billing, not counted again.
          { decisionId: "d2", estimated: true, estimateReason: "compressed" },
          { decisionId: "d3", estimated: true, estimateReason: "cut_short" },
          { decisionId: "d4", estimated: false },
          { decisionId: "d5", estimated: true },
        ],
      ),
    );
    void listener.committed(commit(["d6"], [{ decisionId: "d6", estimated: true, estimateReason: "compressed" }]));
    now = 10_000;
    void listener.committed(commit(["d7"], [{ decisionId: "d7", estimated: true, estimateReason: "compressed" }]));
    expect(totals.estimated).toMatchObject({ compressed: 3, cut_short: 1, unspecified: 1, no_usage: 0 });
    const warned = lines.filter((l) => l.msg.includes("compressed"));
    expect(warned.map((l) => [l.level, l.decisionId, l.provider, l.entries])).toEqual([
      [40, "d1", "openai", 1],
      [40, "d7", "openai", 2],
    ]);
    expect(JSON.stringify(lines)).not.toContain("acct_secret");
  });

  it("counts the meter's own reasons for a request the provider received but that got no usage", () => {
    const { logger } = recordingLogger();
    const totals = { estimated: Object.fromEntries(ESTIMATE_REASONS.map((r) => [r, 0])) as Record<string, number> };
    expect(ESTIMATE_REASONS).toEqual(
      expect.arrayContaining(["client_left", "stream_idle", "upstream_timeout", "upstream_reset", "no_usage_read"]),
    );
    const listener = createEstimatedUsageListener({ totals, logger, clock: () => 0 });
    void listener.committed(
      commit(
        ["c1", "c2", "c3"],
        [
          { decisionId: "c1", estimated: true, estimateReason: "client_left" },
          { decisionId: "c2", estimated: true, estimateReason: "client_left" },
          { decisionId: "c3", estimated: true, estimateReason: "stream_idle" },
        ],
      ),
    );
    expect(totals.estimated).toMatchObject({ client_left: 2, stream_idle: 1, no_usage_metadata: 0 });
  });

  it("is exported as tollgate_meter_usage_estimated_total{reason}, every reason present from the start", async () => {
    const metrics = createMetrics();
    const estimated = Object.fromEntries(ESTIMATE_REASONS.map((r) => [r, 0])) as Record<string, number>;
    const totals = { received: 0, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0, estimated };
    metrics.watchMeter({ totals });
    let body = (await metrics.render()).body;
    for (const r of ESTIMATE_REASONS) expect(body).toContain(`tollgate_meter_usage_estimated_total{reason="${r}"} 0`);
    estimated.compressed = 2;
    estimated.cut_short = 1;
    body = (await metrics.render()).body;
    expect(body).toContain('tollgate_meter_usage_estimated_total{reason="compressed"} 2');
    expect(body).toContain('tollgate_meter_usage_estimated_total{reason="cut_short"} 1');
    estimated.compressed = 5;
    body = (await metrics.render()).body;
    expect(body).toContain('tollgate_meter_usage_estimated_total{reason="compressed"} 5');
  });
});
