import type { Budget } from "./budgets.js";
import type { Plan } from "./catalogue.js";

/** A key's own override of its plan: one of its limits, or its model list. */
export type KeyOverride =
  | "requestsPerMinute"
  | "tokensPerMinute"
  | "allowedModels"
  | "budget"
  | "requestsPerDay"
  | "tokensPerDay"
  | "maxConcurrency";

/** The per-key count limits, each overriding its plan's. */
export type KeyLimit = "requestsPerMinute" | "tokensPerMinute" | "requestsPerDay" | "tokensPerDay" | "maxConcurrency";

/**
 * Who set an override. An operator's stands as set (it may widen the plan or punish a key, and an account can only
 * lower it); an account's only ever narrows the plan in force at admission, so a downgrade takes it down too.
 */
export type OverrideSetter = "operator" | "account";

/** An API key as the authority sees it; the secret itself is never held, only its hash. */
export interface KeyRecord {
  id: string;
  accountId: string;
  name: string;
  displayPrefix: string;
  secretHash: string;
  /** After a rotation with grace: the old secret's hash, valid until `previousSecretExpiresAt`. */
  previousSecretHash: string | null;
  previousSecretExpiresAt: number | null;
  expiresAt: number | null;
  revokedAt: number | null;
  labels: Readonly<Record<string, string>>;
  /** Narrows the plan's models; `null` means the plan decides alone. */
  allowedModels: readonly string[] | null;
  /** Per-key overrides of the plan's limits; `null` keeps the plan's. */
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  /** Daily quotas (UTC days) and requests in flight; `null` or absent keeps the plan's (which may be none). */
  requestsPerDay?: number | null;
  tokensPerDay?: number | null;
  maxConcurrency?: number | null;
  /** Spend cap of this key per period (in the account's time zone); null or absent: none. */
  budget?: Budget | null;
  /** Who set each override; a field missing here counts as the account's (it only narrows the plan). */
  setBy?: Readonly<Partial<Record<KeyOverride, OverrideSetter>>>;
  createdAt: number;
  updatedAt: number;
}

/** The account fields Check needs. */
export interface AccountRecord {
  id: string;
  name: string;
  planId: string;
  suspended: boolean;
  /** Spend cap of the whole account per period; null or absent: none. */
  budget?: Budget | null;
  /** IANA time zone of the account's budget periods; null or absent: UTC. */
  timeZone?: string | null;
  updatedAt: number;
}

/** A key found by its hash, with its account. */
export interface ResolvedKey {
  key: KeyRecord;
  account: AccountRecord;
}

/** Whether an operator set the key's `field` (and it is set): then admission applies it as it is, plan or not. */
export function operatorSet(key: Partial<Pick<KeyRecord, KeyOverride | "setBy">>, field: KeyOverride): boolean {
  return key[field] != null && key.setBy?.[field] === "operator";
}

/**
 * The per-key limits admission applies: an operator's value as set; otherwise the key's own value, never above the
 * plan's now (an account's narrowing made on a bigger plan does not survive a downgrade).
 */
export function effectiveLimits(
  key: Pick<KeyRecord, "requestsPerMinute" | "tokensPerMinute" | "setBy"> &
    Partial<Pick<KeyRecord, "requestsPerDay" | "tokensPerDay" | "maxConcurrency">>,
  plan: Pick<Plan, "requestsPerMinute" | "tokensPerMinute" | "requestsPerDay" | "tokensPerDay" | "maxConcurrency">,
): Record<KeyLimit, number> {
  // 0 means none (a plan without a daily quota or concurrency limit); an account's own value narrows "none" too.
  const limit = (field: KeyLimit) => {
    const own = key[field] ?? null;
    const planned = plan[field] ?? 0;
    if (own === null) return planned;
    return operatorSet(key, field) || planned === 0 ? own : Math.min(own, planned);
  };
  return {
    requestsPerMinute: limit("requestsPerMinute"),
    tokensPerMinute: limit("tokensPerMinute"),
    requestsPerDay: limit("requestsPerDay"),
    tokensPerDay: limit("tokensPerDay"),
    maxConcurrency: limit("maxConcurrency"),
  };
}

/** Whether a presented secret (already matched to `resolved` by hash) authenticates right now. */
export type KeyState = "valid" | "revoked" | "expired" | "rotated_out";

/** Decides a matched key's state at `now` (ms since epoch). Revocation wins over everything else. */
export function keyState(resolved: ResolvedKey, presentedHash: string, now: number): KeyState {
  const { key } = resolved;
  if (key.revokedAt !== null && key.revokedAt <= now) return "revoked";
  if (key.expiresAt !== null && key.expiresAt <= now) return "expired";
  if (presentedHash === key.secretHash) return "valid";
  if (
    presentedHash === key.previousSecretHash &&
    key.previousSecretExpiresAt !== null &&
    key.previousSecretExpiresAt > now
  ) {
    return "valid";
  }
  return "rotated_out";
}

/**
 * Parses a human duration ("90s", "15m", "12h", "30d", "1h30m") into milliseconds. Used for key expiry and rotation
 * grace; anything else is refused with the offending text.
 */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
  const trimmed = text.trim();
  if (!/^(\d+[smhdw])+$/.test(trimmed)) {
    throw new RangeError(`"${text}" is not a duration (use e.g. 90s, 15m, 12h, 30d, 1h30m)`);
  }
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+)([smhdw])/g)) total += Number(amount) * units[unit!]!;
  if (!Number.isSafeInteger(total) || total <= 0) throw new RangeError(`"${text}" is not a positive duration`);
  return total;
}
