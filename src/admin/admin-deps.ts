import type { Stores } from "../app/stores.js";
import type { KeyStore } from "../adapters/sql/key-store.js";
import type { BalanceChange } from "../domain/metering.js";
import type { Authenticate } from "./access.js";
import type { Principal } from "./tokens.js";
import type { Logger } from "../logging.js";

/** What the admin services need from the control plane: passed in, never reached for. */
export interface AdminDeps {
  stores: Stores;
  authenticate: Authenticate;
  /** Revoke/rotate through the control plane, so this process's key cache (and, with Redis, every replica's) drops the key. */
  keyMutations: Pick<KeyStore, "revoke" | "rotate">;
  /** Drops a key or an account from this process's key cache after another kind of change. */
  invalidate(change: { keyId?: string; accountId?: string }): void;
  /** Tells the running credit gate about a committed top-up (in-process or Redis). */
  balanceCommitted(change: BalanceChange): Promise<void>;
  /** Reloads this process's catalogue snapshot now (other replicas poll the version each second). */
  reloadCatalogue(): Promise<void>;
  platformFeeBps: number;
  clock: () => number;
  /** Where admin changes are logged (with their audit target); absent in the CLI's in-process transport. */
  logger?: Logger;
}

/** Records one admin change: who (token id), what (method + target ids), when. Never a secret. */
export async function audit(deps: AdminDeps, who: Principal, method: string, targets: Record<string, string>): Promise<void> {
  await deps.stores.db.knex("admin_audit").insert({ token_id: who.tokenId, method, targets: JSON.stringify(targets), time: deps.clock() });
  deps.logger?.info({ tokenId: who.tokenId, method, target: targets }, "admin change");
}
