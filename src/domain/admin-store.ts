import type { Budget } from "./budgets.js";
import type { KeyOverride, KeyRecord, OverrideSetter } from "./keys.js";
import type { BalanceChange } from "./metering.js";
import type { Nanos } from "./money.js";
import type { WebhookRepository } from "./webhooks.js";

/** Who is calling the admin API: an operator (everything) or one account (its own keys, usage and balance). */
export type Principal = { kind: "operator"; tokenId: string } | { kind: "account"; tokenId: string; accountId: string };

/** An account as the admin API shows it. */
export interface AccountView {
  id: string;
  name: string;
  planId: string;
  suspended: boolean;
  /** Spend cap over all the account's keys; null or absent: none. */
  budget?: Budget | null;
  /** IANA time zone of budget periods; null or absent: UTC. */
  timeZone?: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A plan: default per-key limits, the tiers its keys may reach, and how many live keys an account may hold. */
export interface PlanView {
  id: string;
  name: string;
  requestsPerMinute: number;
  tokensPerMinute: bigint;
  tiers: string[];
  maxKeys: number;
  /** Output a request without max_tokens is expected to use (token limits until settled); null: the default. */
  expectedOutputTokens?: number | null;
  /** Per key: requests and tokens per UTC day, requests in flight at once; null: none. */
  requestsPerDay?: number | null;
  tokensPerDay?: bigint | null;
  maxConcurrency?: number | null;
  /** Free credit granted at sign-up and each UTC month (nano-USD); absent: none. */
  grantSignupNanos?: bigint;
  grantMonthlyNanos?: bigint;
  retired: boolean;
  createdAt: number;
  updatedAt: number;
}

/** A key as stored (hashes included: adapters and use cases only, never a response), with its last use. */
export type KeyView = KeyRecord & { lastUsedAt: number | null };

/** A catalogue model with exact per-token prices in pico-USD. */
export interface ModelView {
  id: string;
  name: string;
  provider: string;
  upstreamModel: string;
  tier: string;
  prices: { input: bigint; cachedInput: bigint; output: bigint };
  contextWindow: number;
  maxOutputTokens: number;
  /** Output tokens the token limits count for a request without max_tokens; null: the plan's, else the default. */
  expectedOutputTokens?: number | null;
  retired: boolean;
  createdAt: number;
  updatedAt: number;
}

/** One ledger row; `id` is a decimal bigint. */
export interface LedgerEntryView {
  id: string;
  kind: string;
  amount: bigint;
  reference: string;
  estimated: boolean;
  createdAt: number;
}

/** One audit event: who (token id), what (method + target ids), when. Never a secret. */
export interface AuditEvent {
  id: string;
  tokenId: string;
  method: string;
  targets: Record<string, string>;
  time: number;
}

/** An admin token as stored: never the secret, only its hash. */
export interface AdminTokenRecord {
  id: string;
  name: string;
  kind: "operator" | "account";
  accountId: string | null;
  createdAt: number;
  revokedAt: number | null;
}

/** A web console session as stored (never its secret): the admin token it stands for, when it ends. */
export interface ConsoleSessionRecord {
  id: string;
  adminTokenId: string;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

/** A top-up as recorded against its idempotency key: what every retry with that key is answered. */
export interface TopUpRecord {
  topUpId: string;
  accountId: string;
  amount: Nanos;
  fee: Nanos;
  feeBps: number;
  balance: Nanos;
}

/** What a top-up attempt did, decided inside its transaction. */
export type TopUpOutcome =
  | { kind: "applied"; record: TopUpRecord; change: BalanceChange }
  | { kind: "replayed"; record: TopUpRecord }
  | { kind: "key_reused"; record: TopUpRecord }
  | { kind: "over_cap"; balance: Nanos };

/** A keyset position in a list ordered by (time, id). */
export type TimeCursor = readonly [number, string];

/** Which usage rows: account (undefined = every account, operators only), key, model, [since, until) in ms. */
export interface UsageSelection {
  accountId?: string;
  keyId?: string;
  model?: string;
  since?: number;
  until?: number;
}

/** One request of the usage log. */
export interface UsageRecordView {
  decisionId: string;
  requestId: string;
  time: number;
  accountId: string;
  keyId: string;
  model: string;
  provider: string;
  status: number;
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  reasoningTokens: bigint;
  cost: bigint;
  estimated: boolean;
  durationMs: bigint;
}

/** Daily usage summed over the grouping columns (absent ones are ""). */
export interface UsageAggregateView {
  keyId: string;
  model: string;
  day: string;
  requests: bigint;
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  reasoningTokens: bigint;
  cost: bigint;
  estimatedRequests: bigint;
}

/** Changes to a key's stored fields; `undefined` leaves a field as it is, `null` clears it. */
export interface KeyChanges {
  name?: string;
  labels?: Record<string, string>;
  allowedModels?: string[] | null;
  requestsPerMinute?: number | null;
  tokensPerMinute?: bigint | null;
  requestsPerDay?: number | null;
  tokensPerDay?: bigint | null;
  maxConcurrency?: number | null;
  budget?: Budget | null;
  /** Who set the overrides changed here (null where one is cleared). */
  setBy?: Partial<Record<KeyOverride, OverrideSetter | null>>;
  secretHash?: string;
  displayPrefix?: string;
  previousSecretHash?: string | null;
  previousSecretExpiresAt?: number | null;
  revokedAt?: number;
}

/**
 * Everything the admin use cases read and write, one method per question; the SQL adapter implements it. The same
 * interface is handed to a transaction's callback, so use cases never see a connection or a query builder.
 */
export interface AdminRepository extends WebhookRepository {
  /** `forUpdate` holds the account's row until the transaction ends (serialises per-account limits such as max_keys). */
  account(id: string, options?: { forUpdate?: boolean }): Promise<AccountView | undefined>;
  accounts(q: { only?: string; after?: TimeCursor; limit: number }): Promise<AccountView[]>;
  insertAccount(a: AccountView): Promise<void>;
  updateAccount(
    id: string,
    changes: { name?: string; planId?: string; suspended?: boolean },
    now: number,
  ): Promise<boolean>;
  accountsOnPlan(planId: string): Promise<number>;
  /** Sets or clears (null) the account's budget and/or time zone; `undefined` leaves one as it is. */
  setAccountBudget(
    id: string,
    changes: { budget?: Budget | null; timeZone?: string | null },
    now: number,
  ): Promise<boolean>;
  /** The account's spend totals by spendField(scope, period) for the given fields (0 when none). */
  spendTotals(accountId: string, fields: readonly string[]): Promise<Map<string, Nanos>>;

  plan(id: string): Promise<PlanView | undefined>;
  plans(includeRetired: boolean): Promise<PlanView[]>;
  insertPlan(p: PlanView): Promise<void>;
  updatePlan(
    id: string,
    changes: Partial<
      Pick<
        PlanView,
        | "name"
        | "requestsPerMinute"
        | "tokensPerMinute"
        | "tiers"
        | "maxKeys"
        | "retired"
        | "expectedOutputTokens"
        | "requestsPerDay"
        | "tokensPerDay"
        | "maxConcurrency"
        | "grantSignupNanos"
        | "grantMonthlyNanos"
      >
    >,
    now: number,
  ): Promise<boolean>;

  /** The newest change time over providers, plans and models (the catalogue version replicas poll). */
  catalogueVersion(): Promise<number>;
  model(id: string): Promise<ModelView | undefined>;
  models(includeRetired: boolean): Promise<ModelView[]>;
  /** Which of `ids` are catalogue models (retired ones included), with their tiers. */
  modelTiers(ids: readonly string[]): Promise<Map<string, string>>;
  insertModel(m: ModelView): Promise<void>;
  updateModel(
    id: string,
    changes: Partial<Omit<ModelView, "id" | "provider" | "createdAt" | "updatedAt">>,
    now: number,
  ): Promise<boolean>;
  providers(): Promise<Array<{ id: string; basePath: string }>>;

  key(id: string, options?: { forUpdate?: boolean }): Promise<KeyView | undefined>;
  keys(q: { accountId: string; after?: TimeCursor; limit: number }): Promise<KeyView[]>;
  /** Keys of the account that are neither revoked nor expired at `now`. */
  liveKeys(accountId: string, now: number): Promise<number>;
  insertKey(k: KeyRecord): Promise<void>;
  updateKey(id: string, changes: KeyChanges, now: number): Promise<boolean>;

  /** The balance and its free part (plan grants not yet spent: spent before paid credit). */
  balance(accountId: string): Promise<{ balance: Nanos; version: number; free?: Nanos }>;
  /** A new account's plan grants (sign-up and this month's), in the creating transaction; the changes to announce. */
  grantOnSignup(accountId: string, now: number): Promise<BalanceChange[]>;
  /**
   * Applies a top-up at most once per (account, idempotency key): claim, ledger rows, balance and the claim's result
   * all in the caller's transaction, so a crash leaves no trace and a concurrent twin sees the whole result.
   */
  topUp(input: {
    accountId: string;
    idempotencyKey: string;
    topUpId: string;
    amount: Nanos;
    feeBps: number;
    maxBalance: Nanos;
    now: number;
  }): Promise<TopUpOutcome>;
  ledgerEntries(q: { accountId: string; beforeId?: bigint; limit: number }): Promise<LedgerEntryView[]>;

  insertAudit(e: Omit<AuditEvent, "id">): Promise<void>;
  auditEvents(q: { beforeId?: bigint; limit: number }): Promise<AuditEvent[]>;

  insertAdminToken(t: AdminTokenRecord & { tokenHash: string }): Promise<void>;
  adminTokenByHash(hash: string): Promise<(AdminTokenRecord & { tokenHash: string }) | undefined>;
  adminTokens(): Promise<AdminTokenRecord[]>;
  revokeAdminToken(id: string, now: number): Promise<AdminTokenRecord | undefined>;
  /** Whether an unrevoked operator token exists (false on a database not migrated yet). */
  hasOperatorToken(): Promise<boolean>;

  /** Stores a console session, and drops sessions that ended before `now` (so the table holds live ones only). */
  insertConsoleSession(s: ConsoleSessionRecord & { sessionHash: string }, now: number): Promise<void>;
  /** A console session by its secret's hash, with the admin token it stands for. */
  consoleSessionByHash(
    hash: string,
  ): Promise<
    | { session: ConsoleSessionRecord & { sessionHash: string }; token: AdminTokenRecord & { tokenHash: string } }
    | undefined
  >;
  /** Ends a console session (idempotent); undefined when there is none with that hash. */
  revokeConsoleSession(hash: string, now: number): Promise<ConsoleSessionRecord | undefined>;

  /** Daily usage summed per group, in group order; at most `limit` groups. */
  usageAggregates(
    s: UsageSelection,
    groups: ReadonlyArray<"key_id" | "model" | "day">,
    limit: number,
  ): Promise<UsageAggregateView[]>;
  /** Usage rows newest first, strictly before `before` in (time, decision id) order. */
  usageRecords(s: UsageSelection, q: { before?: TimeCursor; limit: number }): Promise<UsageRecordView[]>;
  /** Usage rows oldest first, strictly after `after`: the export's pages. */
  usageExportPage(s: UsageSelection, q: { after?: TimeCursor; limit: number }): Promise<UsageRecordView[]>;

  /** A random secret kept in the store (created once), e.g. for signing page tokens. */
  secret(name: string): Promise<Buffer>;
}

/** The admin store: the repository outside a transaction, and `transaction` for a unit of work (all or nothing). */
export interface AdminStore extends AdminRepository {
  transaction<T>(fn: (tx: AdminRepository) => Promise<T>): Promise<T>;
  /** Whether the store answers (readiness). */
  ping(): Promise<void>;
}
