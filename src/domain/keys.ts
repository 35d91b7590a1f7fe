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
  createdAt: number;
  updatedAt: number;
}

/** The account fields Check needs. */
export interface AccountRecord {
  id: string;
  name: string;
  planId: string;
  suspended: boolean;
  updatedAt: number;
}

/** A key found by its hash, with its account. */
export interface ResolvedKey {
  key: KeyRecord;
  account: AccountRecord;
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
