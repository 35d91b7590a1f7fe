import type { AdminRepository, AdminStore, Principal } from "../domain/admin-store.js";
import { denied } from "../domain/errors.js";
import type { CreditReservations } from "../domain/credits.js";
import type { BalanceChange } from "../domain/metering.js";
import type { TargetPolicy } from "../domain/webhook-targets.js";
import type { Logger } from "../logging.js";
import type { LimitWindows } from "./key-limits.js";
import type { PageTokens } from "./page-tokens.js";
import type { WriteLimiter } from "./write-limit.js";

/** Change events published after a unit of work commits (never inside it: a rolled-back change is never announced). */
export interface AdminEvents {
  /** A key's secret, scope, limits or state changed: every replica's key cache drops it. */
  keyChanged(keyId: string): Promise<void>;
  /** An account's plan or suspension changed: every replica drops its keys from the cache. */
  accountChanged(accountId: string): Promise<void>;
  /** A committed top-up: the running credit gate (in-process or Redis) learns the new balance. */
  balanceCommitted(change: BalanceChange): Promise<void>;
  /** Plans or the catalogue changed: this process reloads now (other replicas poll the version). */
  catalogueChanged(): Promise<void>;
}

/** What every admin use case is built from: passed in by the composition root, never reached for. */
export interface AdminContext {
  store: AdminStore;
  events: AdminEvents;
  pageTokens: PageTokens;
  platformFeeBps: number;
  /** The running credit gate, for what open reservations hold against budgets (absent: reported as 0). */
  credits?: Pick<CreditReservations, "budgetUsage">;
  clock: () => number;
  /** Where admin changes are logged beside their audit record. */
  logger?: Logger;
  /** Bounds each account token's rate of changes; absent, changes are not limited (the CLI's in-process calls). */
  writes?: WriteLimiter;
  /** Where webhooks may point (the operator's webhooks.allowed_private_networks); absent, no private network. */
  webhookTargets?: TargetPolicy;
  /** This process's rate limiter, read (never admitted against) for a key's limits now; absent: none to read. */
  limitWindows?: LimitWindows;
  /** How long a web console session lasts (admin.console_session_ttl_ms); absent, one hour. */
  consoleSessionTtlMs?: number;
}

/** Writes the audit record of a change inside its transaction: who (token id), what (operation + target ids), when. */
export async function audit(
  ctx: AdminContext,
  tx: AdminRepository,
  who: Principal,
  method: string,
  targets: Record<string, string>,
): Promise<void> {
  await tx.insertAudit({ tokenId: who.tokenId, method, targets, time: ctx.clock() });
  ctx.logger?.info({ tokenId: who.tokenId, method, target: targets }, "admin change");
}

/** Operator-only operations (plans, catalogue, account changes, credit, audit, admin tokens). */
export function requireOperator(who: Principal, message = "this call needs an operator token"): void {
  if (who.kind !== "operator") throw denied(message);
}

/** An account token reaches only its own account; operators reach all. */
export function requireAccount(who: Principal, accountId: string): void {
  if (who.kind === "account" && who.accountId !== accountId) throw denied("this token cannot reach that account");
}

/** Whether `who` may see rows of `accountId` (used to answer NotFound, not PermissionDenied, for foreign ids). */
export function canSee(who: Principal, accountId: string): boolean {
  return who.kind === "operator" || who.accountId === accountId;
}

/**
 * The updated_at for a catalogue change: strictly above every current one, so the catalogue version (the newest
 * updated_at) always moves and every replica's one-second poll reloads, even for two changes in one millisecond.
 */
export async function nextCatalogueVersion(tx: AdminRepository, now: number): Promise<number> {
  return Math.max(now, (await tx.catalogueVersion()) + 1);
}
