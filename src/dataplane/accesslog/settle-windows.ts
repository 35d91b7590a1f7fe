import type { RateLimiter } from "../../domain/admission.js";
import type { Logger } from "../../logging.js";
import type { AfterCommitListener } from "./after-commit.js";

/** Options for the listener that settles rate-limit windows with actual usage. */
export interface SettleWindowsOptions {
  limiter: Pick<RateLimiter, "settle">;
  logger: Logger;
  clock: () => number;
}

/** How often a run of failed settles may be logged: with Redis down every commit would otherwise log. */
const WARN_EVERY_MS = 10_000;

/**
 * Tells the limiter each newly billed request's actual tokens, so its key's window holds usage instead of the
 * admission's reservation. Once per decision; a settle that fails only over-counts the window until it ages out.
 */
export function createSettleWindowsListener(options: SettleWindowsOptions): AfterCommitListener {
  const { limiter, logger, clock } = options;
  let warnedAt = -Infinity;
  let unsettled = 0;
  return {
    name: "settle windows",
    async committed({ result, events }) {
      if (result.billedDecisions.length === 0) return;
      const billed = new Set(result.billedDecisions);
      const now = clock();
      const settles: Array<void | Promise<void>> = [];
      for (const e of events) {
        if (!billed.delete(e.decisionId)) continue;
        const request = {
          keyId: e.keyId,
          accountId: e.accountId,
          decisionId: e.decisionId,
          actualTokens: e.promptTokens + e.completionTokens,
          now,
        };
        try {
          settles.push(limiter.settle(request));
        } catch (error) {
          // A settle that throws synchronously is one failed settle, not a failure of the others.
          settles.push(Promise.reject(error));
        }
      }
      const failed = (await Promise.allSettled(settles)).filter((r) => r.status === "rejected");
      if (failed.length === 0) return;
      unsettled += failed.length;
      if (clock() - warnedAt < WARN_EVERY_MS) return;
      warnedAt = clock();
      logger.warn(
        { err: (failed[0] as PromiseRejectedResult).reason, unsettled },
        "rate-limit windows not settled with actual usage; they keep the reservations until those age out",
      );
      unsettled = 0;
    },
  };
}
