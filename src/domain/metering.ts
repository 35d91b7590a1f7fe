import { nanos, picoPerToken, requestCost, type Nanos, type PicoPerToken } from "./money.js";

// The meter's domain: one access-log entry in, one verdict out (bill, count, dead-letter). Pure: the transports
// (gRPC ALS, JSON file log) lift their shapes into `LogRecord`, the SQL ledger writes what comes out.

/** Dynamic metadata namespace written by authz (CheckResponse.dynamic_metadata) and read back here. */
export const AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz";
/** Dynamic metadata namespace written by the usage filter (envoy/usage.lua, src/dataplane/usage). */
export const USAGE_NAMESPACE = "tollgate.usage";

/** One access-log entry lifted out of its transport: gRPC ALS or one line of Envoy's JSON file log. */
export interface LogRecord {
  /** Envoy's access_log_type name ("DownstreamEnd", …); only DownstreamEnd is final. Empty when not set. */
  logType: string;
  /** The `envoy.filters.http.ext_authz` namespace, or undefined when the request carried none. */
  authz: Record<string, unknown> | undefined;
  /** The `tollgate.usage` namespace, or undefined when the usage filter wrote nothing. */
  usage: Record<string, unknown> | undefined;
  requestId: string;
  /** HTTP status sent downstream; 0 when none was sent. */
  status: number;
  startMs: number;
  durationMs: number;
}

/** A billable request: what authz admitted joined with what the usage filter counted. */
export interface UsageEvent {
  decisionId: string;
  accountId: string;
  keyId: string;
  model: string;
  provider: string;
  prices: { input: PicoPerToken; cachedInput: PicoPerToken; output: PicoPerToken };
  reservedNanos: Nanos;
  requestId: string;
  status: number;
  startMs: number;
  durationMs: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
  /** The actual cost: exact rational cost rounded up once to a nano-USD. */
  cost: Nanos;
  /** True when the counts are the usage filter's estimate (no provider usage, cut-short stream, no usage at all). */
  estimated: boolean;
}

/** What the meter does with one entry; a verdict, never an exception. */
export type Classified =
  | { kind: "bill"; event: UsageEvent }
  | { kind: "skip"; reason: "not_final" | "denied" | "no_authz" }
  | { kind: "malformed"; reason: string };

const DIGITS = /^\d{1,30}$/;

function text(ns: Record<string, unknown>, field: string): string {
  const v = ns[field];
  if (typeof v !== "string" || v === "") throw new Malformed(`authz.${field} is missing or not a string`);
  return v;
}

/** Integer read from a decimal string (authz writes money as strings) or a safe integer (file logs may render numbers). */
function integer(ns: Record<string, unknown>, where: string, field: string): bigint {
  const v = ns[field];
  if (typeof v === "string" && DIGITS.test(v)) return BigInt(v);
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new Malformed(`${where}.${field} is missing or not a non-negative integer`);
}

function count(ns: Record<string, unknown>, field: string): number {
  const v = ns[field];
  if (v === undefined || v === null) return 0;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  throw new Malformed(`usage.${field} is not a non-negative integer`);
}

class Malformed extends Error {}

/**
 * Classifies one entry. Only DownstreamEnd entries (or entries that do not say, as old Envoys send) are final;
 * a request without a decision id was denied or answered by authz and is counted, not billed; anything that has a
 * decision id but cannot be priced is malformed and goes to the dead-letter table with the reason.
 */
export function classify(record: LogRecord): Classified {
  if (record.logType !== "" && record.logType !== "DownstreamEnd" && record.logType !== "NotSet") {
    return { kind: "skip", reason: "not_final" };
  }
  const authz = record.authz;
  if (!authz) return { kind: "skip", reason: "no_authz" };
  if (authz.decision_id === undefined || authz.decision_id === null || authz.decision_id === "") {
    return { kind: "skip", reason: "denied" };
  }
  try {
    const decisionId = text(authz, "decision_id");
    const prices = {
      input: picoPerToken(integer(authz, "authz", "price_input")),
      cachedInput: picoPerToken(integer(authz, "authz", "price_cached_input")),
      output: picoPerToken(integer(authz, "authz", "price_output")),
    };
    const reservedNanos = nanos(integer(authz, "authz", "reserved_nanos"));
    const usage = record.usage;
    let promptTokens = 0;
    let completionTokens = 0;
    let cachedTokens = 0;
    let reasoningTokens = 0;
    // No usage at all: the upstream never answered (connect failure, reset before headers); it costs nothing, and
    // is flagged estimated because nobody counted.
    let estimated = true;
    if (usage) {
      promptTokens = count(usage, "prompt_tokens");
      completionTokens = count(usage, "completion_tokens");
      cachedTokens = count(usage, "cached_tokens");
      reasoningTokens = count(usage, "reasoning_tokens");
      if (usage.source !== "provider" && usage.source !== "estimate") throw new Malformed(`usage.source must be "provider" or "estimate"`);
      if (typeof usage.complete !== "boolean") throw new Malformed("usage.complete must be a boolean");
      if (cachedTokens > promptTokens) throw new Malformed("usage.cached_tokens exceeds usage.prompt_tokens");
      if (reasoningTokens > completionTokens) throw new Malformed("usage.reasoning_tokens exceeds usage.completion_tokens");
      estimated = usage.source === "estimate" || usage.complete === false;
    }
    const cost = requestCost({ promptTokens, cachedTokens, completionTokens }, prices);
    return {
      kind: "bill",
      event: {
        decisionId,
        accountId: text(authz, "account_id"),
        keyId: text(authz, "key_id"),
        model: text(authz, "model"),
        provider: text(authz, "provider"),
        prices,
        reservedNanos,
        requestId: record.requestId,
        status: record.status,
        startMs: record.startMs,
        durationMs: record.durationMs,
        promptTokens,
        completionTokens,
        cachedTokens,
        reasoningTokens,
        cost,
        estimated,
      },
    };
  } catch (error) {
    if (error instanceof Malformed || error instanceof RangeError) return { kind: "malformed", reason: error.message };
    throw error;
  }
}

/** Kinds of ledger entry. `platform_fee` is revenue recorded beside a top-up; it never moves the credit balance. */
export type LedgerKind = "top_up" | "platform_fee" | "usage_debit" | "expired_reservation_charge" | "adjustment";

/** An entry that could not be billed, kept with the reason so an operator can look at it. */
export interface DeadLetter {
  source: "als" | "file";
  reason: string;
  payload: string;
}

/** An unsettled reservation whose time ran out: charged its reserved worst case, flagged estimated. */
export interface ExpiredReservation {
  accountId: string;
  decisionId: string;
  amount: Nanos;
}

/** A committed change to one account's balance; `version` counts committed changes, so caches apply each once. */
export interface BalanceChange {
  accountId: string;
  delta: bigint;
  balance: Nanos;
  version: number;
  /** Decisions whose reservations this commit settled (released in the gate). */
  settled: string[];
}

/** What one group commit did. */
export interface CommitResult {
  billed: number;
  alreadyBilled: number;
  expired: number;
  deadLettered: number;
  /** Decisions this commit billed (first real settlement: usage debit, or adjustment of an expired charge). */
  billedDecisions: string[];
  changes: BalanceChange[];
}

/** The durable, exactly-once ledger the meter writes through (SQL). */
export interface Ledger {
  /** Settles events, charges expired reservations and stores dead letters in one transaction; idempotent per decision. */
  commit(batch: { events: UsageEvent[]; expired: ExpiredReservation[]; deadLetters: DeadLetter[]; now: number }): Promise<CommitResult>;
}

/** Where credit gates load an account's committed balance from (SQL). */
export interface BalanceSource {
  balances(accountIds: readonly string[]): Promise<Map<string, { balance: Nanos; version: number }>>;
}
