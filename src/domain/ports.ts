import type { Budget } from "./budgets.js";
import type { PlanGrants } from "./grants.js";
import type { CatalogueModel, CatalogueSnapshot, Plan, Provider } from "./catalogue.js";
import type { AccountRecord, KeyRecord, OverrideSetter, ResolvedKey } from "./keys.js";
import type { BalanceChange, BalanceSource, Ledger, LedgerKind, UsageEvent } from "./metering.js";
import type { Nanos } from "./money.js";

/**
 * The store ports the roles use (accounts, keys, catalogue, ledger): declared here with the domain, implemented in
 * src/adapters/sql, wired in src/app/stores.ts. The admin API's port is src/domain/admin-store.ts.
 */

/** What a catalogue file (or any seed) provides: providers, plans with their key count, and models. */
export interface CatalogueSeed {
  providers: Provider[];
  plans: Array<Plan & { maxKeys: number; grants?: PlanGrants }>;
  models: CatalogueModel[];
}

/** Accounts: created on an active plan, read by id, listed. */
export interface AccountStore {
  create(input: { name: string; planId: string }): Promise<AccountRecord>;
  get(id: string): Promise<AccountRecord | undefined>;
  list(): Promise<AccountRecord[]>;
  /** Sets or clears (null) the account's budget and/or time zone; `undefined` leaves one as it is. */
  setBudget(id: string, changes: { budget?: Budget | null; timeZone?: string | null }): Promise<AccountRecord>;
}

/** What creating a key needs; limits and model scope are optional narrowing of the plan. */
export interface NewKey {
  accountId: string;
  name?: string;
  expiresAt?: number | null;
  labels?: Record<string, string>;
  allowedModels?: string[] | null;
  requestsPerMinute?: number | null;
  tokensPerMinute?: number | null;
  /** Daily quotas (UTC days) and requests in flight at once. */
  requestsPerDay?: number | null;
  tokensPerDay?: number | null;
  maxConcurrency?: number | null;
  /** A spend cap per period. */
  budget?: Budget | null;
  /** Who the overrides above come from (default "operator": this store is not reachable by accounts). */
  setBy?: OverrideSetter;
}

/** A key with its plaintext secret: returned exactly once, at creation or rotation. */
export interface IssuedKey {
  key: KeyRecord;
  secret: string;
}

/** API keys. Secrets are never stored, only their hashes. */
export interface KeyStore {
  create(input: NewKey): Promise<IssuedKey>;
  get(id: string): Promise<KeyRecord | undefined>;
  listByAccount(accountId: string): Promise<KeyRecord[]>;
  revoke(id: string): Promise<KeyRecord>;
  /** New secret for the same key; the old one dies now or after `graceMs`. */
  rotate(id: string, graceMs?: number): Promise<IssuedKey>;
  /** Sets or clears (null) the key's own limits; `undefined` leaves a limit as it is. */
  setLimits(
    id: string,
    limits: { requestsPerMinute?: number | null; tokensPerMinute?: number | null },
  ): Promise<KeyRecord>;
  /** Finds the key (and its account) whose current or in-grace previous secret has this hash: the cold path of Check. */
  resolveByHash(hash: string): Promise<ResolvedKey | null>;
  /** Keys and accounts changed at or after `since` (ms), for cache invalidation by polling. */
  changedSince(since: number): Promise<{ keys: ResolvedKey[]; accounts: AccountRecord[] }>;
  /** Records last use, batched off the hot path. */
  touch(lastUsed: ReadonlyMap<string, number>): Promise<void>;
}

/** Catalogue, plans and providers, and the compiled snapshot Check reads. */
export interface CatalogueStore {
  /** Inserts the file's rows once per source; later starts keep operators' edits. Returns whether it loaded. */
  seed(file: CatalogueSeed, source?: string): Promise<boolean>;
  snapshot(): Promise<CatalogueSnapshot>;
  /** The newest change time over catalogue tables, for cheap change polling. */
  version(): Promise<number>;
}

/** One request in the usage log, as queries return it: the billed event's own fields, `time` being its start. */
export type UsageRow = { time: number } & Pick<
  UsageEvent,
  | "decisionId"
  | "requestId"
  | "accountId"
  | "keyId"
  | "model"
  | "provider"
  | "status"
  | "promptTokens"
  | "completionTokens"
  | "cachedTokens"
  | "reasoningTokens"
  | "cost"
  | "estimated"
  | "durationMs"
>;

/** One account, key, model and UTC day of usage. */
export interface DailyUsage {
  day: string;
  keyId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
  cost: Nanos;
  estimatedRequests: number;
}

/** Filters for usage queries; times are inclusive-exclusive milliseconds. */
export interface UsageQuery {
  accountId: string;
  keyId?: string;
  model?: string;
  since?: number;
  until?: number;
  limit?: number;
}

/** The ledger: exactly-once settlement, top-ups, balances and usage queries. */
export interface LedgerStore extends Ledger, BalanceSource {
  /** Adds credit C: records C and the platform fee on C, grows the balance by C; one transaction. */
  topUp(input: {
    accountId: string;
    amount: Nanos;
    feeBps: number;
    now: number;
  }): Promise<{ topUpId: string; fee: Nanos; change: BalanceChange }>;
  balance(accountId: string): Promise<{ balance: Nanos; version: number }>;
  /** Sum of every balance-moving entry of an account (the invariant: equals its balance). */
  entriesTotal(accountId: string): Promise<Nanos>;
  entries(
    accountId: string,
  ): Promise<Array<{ kind: LedgerKind; amount: bigint; decisionId: string; estimated: boolean }>>;
  usage(query: UsageQuery): Promise<UsageRow[]>;
  daily(query: UsageQuery): Promise<DailyUsage[]>;
  deadLetters(): Promise<Array<{ source: string; reason: string; payload: string }>>;
  /** Deletes usage_log rows and dead letters older than `before` (the ledger and daily rollups are kept). */
  prune(before: number): Promise<{ usage: number; deadLetters: number }>;
}
