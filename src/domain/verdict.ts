import type { CatalogueModel } from "./catalogue.js";
import type { Nanos } from "./money.js";

/** Every reason a request is refused. The authz edge maps each to one HTTP status in one table. */
export type DenyCode =
  | "missing_api_key"
  | "invalid_api_key"
  | "expired_api_key"
  | "revoked_api_key"
  | "invalid_request"
  | "request_too_large"
  | "unsupported_endpoint"
  | "model_not_found"
  | "model_not_permitted"
  | "insufficient_credits"
  | "budget_exceeded"
  | "rate_limit_exceeded"
  | "concurrency_limit_exceeded"
  | "unavailable";

/** One limit's figures as the x-ratelimit-* headers report them. */
export interface LimitFigures {
  limit: number;
  remaining: number;
  resetSeconds: number;
}

/**
 * Rate-limit state reported to clients as OpenAI's x-ratelimit-* headers: per minute, and per UTC day when the key
 * has daily quotas (`x-ratelimit-*-requests-day`, `x-ratelimit-*-tokens-day`).
 */
export interface RateLimitState {
  requests: LimitFigures;
  tokens: LimitFigures;
  requestsDay?: LimitFigures;
  tokensDay?: LimitFigures;
}

/** A refusal: data, not an exception. */
export interface Deny {
  kind: "deny";
  code: DenyCode;
  message: string;
  param?: string;
  retryAfterSeconds?: number;
  rateLimit?: RateLimitState;
}

/** What a request admitted for forwarding carries to the data plane and the meter. */
export interface Admission {
  kind: "allow";
  decisionId: string;
  accountId: string;
  keyId: string;
  /** The model and the prices in force when admitted. */
  model: CatalogueModel;
  stream: boolean;
  promptTokensEstimate: number;
  maxOutputTokens: number;
  reservedTokens: number;
  reservedNanos: Nanos;
  rateLimit?: RateLimitState;
  /** Admission's clock when it held the request (what its holds are keyed by, the UTC day's quota included). */
  admittedAt?: number;
}

/** A request the control plane answers itself (GET /v1/models), without reaching a provider. */
export interface DirectAnswer {
  kind: "answer";
  body: unknown;
}

/** The outcome of one Check. */
export type Verdict = Admission | Deny | DirectAnswer;

/** Shorthand for building a refusal. */
export function deny(
  code: DenyCode,
  message: string,
  extra: Partial<Omit<Deny, "kind" | "code" | "message">> = {},
): Deny {
  return { kind: "deny", code, message, ...extra };
}
