import {
  AUTHZ_METADATA_KEYS as A,
  USAGE_ESTIMATE_REASONS,
  USAGE_METADATA_KEYS as U,
  USAGE_SOURCES,
  type UsageEstimateReason,
} from "../contract/index.js";
import type { SpendTotal } from "./budgets.js";
import { nanos, picoPerToken, requestCost, type Nanos, type PicoPerToken } from "./money.js";

// The meter's domain: one access-log entry in, one verdict out (bill, count, dead-letter). Pure: the transports
// (gRPC ALS, JSON file log) lift their shapes into `LogRecord`, the SQL ledger writes what comes out.

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
  /** Envoy's short response flags (`DC`, `SI`, `UF`, …), as %RESPONSE_FLAGS% prints them; absent when not carried. */
  responseFlags?: readonly string[];
  /**
   * Whether Envoy sent the whole request upstream (ALS `time_to_last_upstream_tx_byte`, file log
   * `%REQUEST_TX_DURATION%`): the provider has the prompt. Absent or false: not proven, so never billed for.
   */
  upstreamRequestSent?: boolean;
}

/**
 * The meter's own reasons, for an admitted request whose entry carries no usage at all (no response reached the usage
 * filter). Billed at zero: `no_usage_metadata` (the provider never received the whole request, or the entry cannot
 * prove it did) and `upstream_reset` (the provider's connection or stream broke before its response headers: UR, UC,
 * UPE, LR; a provider failure, which clients' SDKs retry, so billing it would charge one answer twice). Billed the
 * signed prompt estimate at the input price, because the provider received the whole prompt and the cause is not
 * its failure: `client_left` (the client went away before the answer: DC, DR), `stream_idle` (Envoy's
 * stream_idle_timeout cut a long answer: SI), `upstream_timeout` (UT), `no_usage_read` (none of those: say, a usage
 * filter that failed).
 */
export const METER_ESTIMATE_REASONS = [
  "no_usage_metadata",
  "client_left",
  "stream_idle",
  "upstream_timeout",
  "upstream_reset",
  "no_usage_read",
] as const;
/** One of METER_ESTIMATE_REASONS. */
export type MeterEstimateReason = (typeof METER_ESTIMATE_REASONS)[number];

/**
 * Why a bill is an estimate: the usage filter's `estimate_reason`, the meter's own when the filter wrote no usage
 * (METER_ESTIMATE_REASONS), or `unspecified` when the filter gave no reason it knows. A fixed set, so a metric label
 * built from it never grows.
 */
export type EstimateReason = UsageEstimateReason | MeterEstimateReason | "unspecified";
/** Every EstimateReason. */
export const ESTIMATE_REASONS: readonly EstimateReason[] = [
  ...Object.values(USAGE_ESTIMATE_REASONS),
  ...METER_ESTIMATE_REASONS,
  "unspecified",
];

/**
 * Flags that say the request never reached a provider: connection failure, no healthy host, circuit breaker,
 * retries (which fire only before the request is sent) exhausted, no route or cluster, authz refused or failed,
 * DNS failure. Any of them outweighs a recorded upstream send.
 */
const NOT_REACHED_FLAGS: ReadonlySet<string> = new Set(["UF", "UH", "UO", "URX", "NR", "NC", "UAEX", "DF"]);

/** Flags of a request Envoy cut off itself before the provider's response started, answering with a local reply. */
const ENVOY_CUT_FLAGS: ReadonlySet<string> = new Set(["SI", "UT", "UR", "UC", "UPE", "LR"]);

/**
 * True when the usage namespace is only the usage filter's view of Envoy's own local reply: Envoy sends its stream
 * idle timeout (504/408) or reset (503) replies through the encoder filters, so envoy_on_response sees a status >= 400
 * and writes the zero usage of a provider error, although no provider answered. Such usage is not the provider's.
 */
function isLocalReplyUsage(record: LogRecord, usage: Record<string, unknown>): boolean {
  if (!record.upstreamRequestSent || !(record.responseFlags ?? []).some((f) => ENVOY_CUT_FLAGS.has(f))) return false;
  if (usage[U.source] !== USAGE_SOURCES.provider) return false;
  return [U.promptTokens, U.completionTokens, U.cachedTokens, U.reasoningTokens].every(
    (k) => usage[k] === 0 || usage[k] === undefined,
  );
}

/** Which of the meter's reasons fits an entry without usage (see METER_ESTIMATE_REASONS); first match wins. */
function unansweredReason(record: LogRecord): MeterEstimateReason {
  const flags = record.responseFlags ?? [];
  if (!record.upstreamRequestSent || flags.some((f) => NOT_REACHED_FLAGS.has(f))) return "no_usage_metadata";
  const has = (...names: string[]) => names.some((n) => flags.includes(n));
  if (has("SI")) return "stream_idle";
  if (has("UT")) return "upstream_timeout";
  if (has("DC", "DR")) return "client_left";
  if (has("UR", "UC", "UPE", "LR")) return "upstream_reset";
  return "no_usage_read";
}
const FILTER_REASONS = new Set<string>(Object.values(USAGE_ESTIMATE_REASONS));
/** The meter's reasons that bill nothing (see METER_ESTIMATE_REASONS). */
const UNBILLED_REASONS: ReadonlySet<EstimateReason> = new Set<EstimateReason>(["no_usage_metadata", "upstream_reset"]);

/** The reason of an estimated bill from its usage namespace; a reason is a diagnosis, never a cause to refuse. */
function estimateReasonOf(usage: Record<string, unknown>, complete: boolean): EstimateReason {
  const given = usage[U.estimateReason];
  if (typeof given === "string" && FILTER_REASONS.has(given)) return given as UsageEstimateReason;
  // A filter from before estimate_reason: an incomplete response is all it could say.
  if (given === undefined && !complete) return USAGE_ESTIMATE_REASONS.cutShort;
  return "unspecified";
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
  /** Why, when `estimated` (absent otherwise; events spooled before it existed lack it too). */
  estimateReason?: EstimateReason;
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
  const id = authz[A.decisionId];
  if (id === undefined || id === null || id === "") {
    return { kind: "skip", reason: "denied" };
  }
  try {
    const decisionId = text(authz, A.decisionId);
    const prices = {
      input: picoPerToken(integer(authz, "authz", A.priceInput)),
      cachedInput: picoPerToken(integer(authz, "authz", A.priceCachedInput)),
      output: picoPerToken(integer(authz, "authz", A.priceOutput)),
    };
    const reservedNanos = nanos(integer(authz, "authz", A.reservedNanos));
    const usage = record.usage && !isLocalReplyUsage(record, record.usage) ? record.usage : undefined;
    let promptTokens = 0;
    let completionTokens = 0;
    let cachedTokens = 0;
    let reasoningTokens = 0;
    // No usage at all: no response reached the usage filter. If the provider received the whole request and did not
    // fail (the client left, the stream idled out), it has read and billed the prompt: the signed prompt estimate is
    // billed at the input price. If it never did, or broke off itself, nothing is billed. Either way estimated.
    let estimated = true;
    let estimateReason: EstimateReason = unansweredReason(record);
    if (!usage && !UNBILLED_REASONS.has(estimateReason)) {
      promptTokens = Number(integer(authz, "authz", A.promptTokensEstimate));
      if (!Number.isSafeInteger(promptTokens)) throw new Malformed(`authz.${A.promptTokensEstimate} is too large`);
    }
    if (usage) {
      promptTokens = count(usage, U.promptTokens);
      completionTokens = count(usage, U.completionTokens);
      cachedTokens = count(usage, U.cachedTokens);
      reasoningTokens = count(usage, U.reasoningTokens);
      const source = usage[U.source];
      const complete = usage[U.complete];
      if (source !== USAGE_SOURCES.provider && source !== USAGE_SOURCES.estimate) {
        throw new Malformed(`usage.${U.source} must be "${USAGE_SOURCES.provider}" or "${USAGE_SOURCES.estimate}"`);
      }
      if (typeof complete !== "boolean") throw new Malformed(`usage.${U.complete} must be a boolean`);
      if (cachedTokens > promptTokens) throw new Malformed(`usage.${U.cachedTokens} exceeds usage.${U.promptTokens}`);
      if (reasoningTokens > completionTokens)
        throw new Malformed(`usage.${U.reasoningTokens} exceeds usage.${U.completionTokens}`);
      estimated = source === USAGE_SOURCES.estimate || complete === false;
      estimateReason = estimateReasonOf(usage, complete);
    }
    const cost = requestCost({ promptTokens, cachedTokens, completionTokens }, prices);
    return {
      kind: "bill",
      event: {
        decisionId,
        accountId: text(authz, A.accountId),
        keyId: text(authz, A.keyId),
        model: text(authz, A.model),
        provider: text(authz, A.provider),
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
        ...(estimated ? { estimateReason } : {}),
      },
    };
  } catch (error) {
    if (error instanceof Malformed || error instanceof RangeError) return { kind: "malformed", reason: error.message };
    throw error;
  }
}

/** Kinds of ledger entry. `platform_fee` is revenue recorded beside a top-up; it never moves the credit balance. */
export type LedgerKind =
  | "top_up"
  | "platform_fee"
  | "usage_debit"
  | "expired_reservation_charge"
  | "adjustment"
  /** Free credit a plan granted (sign-up, monthly): no platform fee, the balance's free part. */
  | "grant";

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
  /** The key it was admitted for, when the gate knows it: its charge counts against the key's budget. */
  keyId?: string;
}

/** A committed change to one account's balance; `version` counts committed changes, so caches apply each once. */
export interface BalanceChange {
  accountId: string;
  delta: bigint;
  balance: Nanos;
  version: number;
  /** Decisions whose reservations this commit settled (released in the gate). */
  settled: string[];
  /** Spend totals (per key and account, per period) this commit changed, as they stand after it. */
  spend?: SpendTotal[];
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
  commit(batch: {
    events: UsageEvent[];
    expired: ExpiredReservation[];
    deadLetters: DeadLetter[];
    now: number;
  }): Promise<CommitResult>;
}

/** Where credit gates load an account's committed balance from (SQL). */
export interface BalanceSource {
  /**
   * Balances with their version; with `spendAt`, also each account's spend totals (its keys' and its own) in the
   * periods containing that instant, read consistently with the version.
   */
  balances(
    accountIds: readonly string[],
    spendAt?: number,
  ): Promise<Map<string, { balance: Nanos; version: number; spend?: SpendTotal[] }>>;
}
