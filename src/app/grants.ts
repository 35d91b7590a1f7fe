import type { CreditReservations } from "../domain/credits.js";
import type { GrantStore } from "../domain/grants.js";
import type { Logger } from "../logging.js";

/** How often a process looks for accounts due their monthly grant (the first look is at start). */
export const GRANT_SWEEP_INTERVAL_MS = 60_000;
/** Accounts granted per look; a backlog (the first day of a month) is worked off over several. */
const GRANT_BATCH = 500;

/**
 * Applies the plans' monthly grants that are due and tells the running credit gate about each one, like any committed
 * change. Every process may run it: a grant's ledger reference is unique per account and month, so it lands once.
 * Returns how many accounts it granted.
 */
export async function sweepGrants(grants: GrantStore, credits: CreditReservations, now: number): Promise<number> {
  let granted = 0;
  for (;;) {
    const changes = await grants.grantDue(now, GRANT_BATCH);
    if (changes.length > 0) await credits.committed(changes);
    granted += changes.length;
    if (changes.length < GRANT_BATCH) return granted;
  }
}

/** Runs sweepGrants now and every `intervalMs`; returns the stop function (a closer). */
export function startGrantSweep(options: {
  grants: GrantStore;
  credits: CreditReservations;
  clock: () => number;
  logger: Logger;
  intervalMs?: number;
}): () => void {
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const granted = await sweepGrants(options.grants, options.credits, options.clock());
      if (granted > 0) options.logger.info({ granted }, "monthly plan grants applied");
    } catch (err) {
      options.logger.warn({ err }, "applying monthly plan grants failed; retrying at the next sweep");
    } finally {
      running = false;
    }
  };
  void run();
  const timer = setInterval(run, options.intervalMs ?? GRANT_SWEEP_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
