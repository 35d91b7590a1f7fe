import type { EstimateReason } from "../../domain/metering.js";
import type { Logger } from "../../logging.js";
import type { AfterCommitListener } from "./after-commit.js";

// An estimated bill is billed (an admitted request is never left unbilled) but is not the provider's count. Most
// reasons are routine (a client that leaves mid-stream is cut short); "compressed" is a misconfiguration: a provider,
// or a proxy in front of it, compressed although Envoy asked for `accept-encoding: identity`, so no usage of that
// route can be read until it is fixed. Every reason is counted; that one is also warned about.

/** A warn line per this long at most (the usage namespace is not signed: anyone's input, never a flood of lines). */
const WARN_EVERY_MS = 10_000;

/** Options for the estimated-usage listener. */
export interface EstimatedUsageOptions {
  /** Running totals by reason (metrics read them on scrape as `tollgate_meter_usage_estimated_total{reason}`). */
  totals: { estimated: Record<string, number> };
  logger: Logger;
  clock: () => number;
}

/**
 * Counts each decision first billed (by this commit) as an estimate, by its reason (`unspecified` when it has none),
 * and warns at most once per 10 s about compressed responses, naming the latest decision id and its provider and how
 * many since the last line (no account, key or amounts).
 */
export function createEstimatedUsageListener(options: EstimatedUsageOptions): AfterCommitListener {
  const { totals, logger, clock } = options;
  let warnedAt = -Infinity;
  let since = 0;
  return {
    name: "estimated-usage",
    committed({ result, events }) {
      const firstBilled = new Set(result.billedDecisions);
      for (const e of events) {
        // Duplicates (already billed) and refused events are not first billings; each decision counts once.
        if (!firstBilled.delete(e.decisionId) || !e.estimated) continue;
        const reason: EstimateReason = e.estimateReason ?? "unspecified";
        totals.estimated[reason] = (totals.estimated[reason] ?? 0) + 1;
        if (reason !== "compressed") continue;
        since++;
        if (clock() - warnedAt < WARN_EVERY_MS) continue;
        warnedAt = clock();
        logger.warn(
          { decisionId: e.decisionId, provider: e.provider, entries: since },
          "provider response compressed despite accept-encoding: identity; usage billed as an estimate (see tollgate_meter_usage_estimated_total)",
        );
        since = 0;
      }
    },
  };
}
