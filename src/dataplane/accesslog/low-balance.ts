import type { AfterCommitListener } from "./after-commit.js";

/**
 * Tells the webhook side which accounts' balances a commit moved, so their balance.low watches are re-checked soon.
 * It only hands the ids over (the check runs in its own transaction, later): the meter never waits on alerts.
 */
export function createLowBalanceListener(options: {
  balancesChanged(accountIds: Iterable<string>): void;
}): AfterCommitListener {
  return {
    name: "low balance",
    committed({ result }) {
      if (result.changes.length > 0) options.balancesChanged(result.changes.map((c) => c.accountId));
    },
  };
}
