// The names shared by Envoy's config (envoy/envoy.yaml, envoy/envoy.local.yaml), authz, the usage filter
// (envoy/usage.lua and its TypeScript twin), the meter and the local edge: the whole contract between the
// control plane and the data plane, in one place. Plain constants with no imports, so src/domain may use them.
// The Lua filter and the YAML cannot import this file: test/contract/names.test.ts reads them and fails when a
// name they use drifts from the one here. Change a name here, there, and in the YAML/Lua together.

// ---------------------------------------------------------------------------------------------------------------
// Dynamic metadata: the join between authz, the usage filter and the meter.
// ---------------------------------------------------------------------------------------------------------------

/** Envoy files ext_authz's CheckResponse.dynamic_metadata under the filter's name; the usage filter and the meter read it back. */
export const AUTHZ_METADATA_NAMESPACE = "envoy.filters.http.ext_authz";

/** The namespace the usage filter (envoy/usage.lua, or the local edge) writes token usage to; the meter bills from it. */
export const USAGE_METADATA_NAMESPACE = "tollgate.usage";

/**
 * Every key authz writes into the ext_authz namespace: on an allow all of them except `verdict`, on a deny only
 * `verdict`. The meter, the usage filter and `tollgate reconcile` read them back, so none may be renamed alone.
 */
export const AUTHZ_METADATA_KEYS = {
  /** Unique per allowed request: the idempotency key of billing and the join key of the access log. */
  decisionId: "decision_id",
  accountId: "account_id",
  keyId: "key_id",
  /** The catalogue model id the client asked for (what is billed). */
  model: "model",
  /** The provider's own model id the request is rewritten to. */
  upstreamModel: "upstream_model",
  provider: "provider",
  /** Prices in force at admission, pico-USD per token as decimal strings. */
  priceInput: "price_input",
  priceCachedInput: "price_cached_input",
  priceOutput: "price_output",
  reservedTokens: "reserved_tokens",
  /** The credit reservation, nano-USD as a decimal string. */
  reservedNanos: "reserved_nanos",
  /** Authz's prompt-token estimate: the usage filter's fallback when the provider reports no usage. */
  promptTokensEstimate: "prompt_tokens_estimate",
  maxOutputTokens: "max_output_tokens",
  stream: "stream",
  /** HMAC over the billing fields; the meter bills only entries whose signature verifies. */
  signature: "sig",
  /** The deny code, written on denies only (such entries carry no decision id and are never billed). */
  verdict: "verdict",
} as const;

/** A key of the ext_authz metadata namespace. */
export type AuthzMetadataKey = (typeof AUTHZ_METADATA_KEYS)[keyof typeof AUTHZ_METADATA_KEYS];

/** Every key the usage filter writes into `tollgate.usage`; the meter bills from exactly these. */
export const USAGE_METADATA_KEYS = {
  promptTokens: "prompt_tokens",
  completionTokens: "completion_tokens",
  cachedTokens: "cached_tokens",
  reasoningTokens: "reasoning_tokens",
  /** One of USAGE_SOURCES: who counted the tokens. */
  source: "source",
  /** Whether the response finished normally; an incomplete one is billed as an estimate. */
  complete: "complete",
  /** Why the counts are an estimate: one of USAGE_ESTIMATE_REASONS, or "" when the provider's usage was read whole. */
  estimateReason: "estimate_reason",
} as const;

/** A key of the `tollgate.usage` namespace. */
export type UsageMetadataKey = (typeof USAGE_METADATA_KEYS)[keyof typeof USAGE_METADATA_KEYS];

/** The values of `tollgate.usage`'s `source`: the provider reported usage, or the filter estimated it. */
export const USAGE_SOURCES = { provider: "provider", estimate: "estimate" } as const;

/** The values of `tollgate.usage`'s `estimate_reason`: why the usage filter could not bill the provider's usage. */
export const USAGE_ESTIMATE_REASONS = {
  /** The response had a content-encoding other than identity: its bytes cannot be read. */
  compressed: "compressed",
  /** The response ended before it finished (upstream reset, client gone). */
  cutShort: "cut_short",
  /** A JSON body over the filter's parse limit. */
  tooLarge: "too_large",
  /** The provider's usage has counts the meter cannot bill (cached above prompt, reasoning above completion, > 2^53). */
  invalidUsage: "invalid_usage",
  /** Neither JSON nor an event stream, or a JSON body that does not parse. */
  unreadable: "unreadable",
  /** Read whole, but it reported no usage. */
  noUsage: "no_usage",
} as const;

/** One of USAGE_ESTIMATE_REASONS. */
export type UsageEstimateReason = (typeof USAGE_ESTIMATE_REASONS)[keyof typeof USAGE_ESTIMATE_REASONS];

// ---------------------------------------------------------------------------------------------------------------
// Headers.
// ---------------------------------------------------------------------------------------------------------------

/** Prefix of every Tollgate-internal header; client-sent ones reach authz (allowed_headers) only to be stripped. */
export const TOLLGATE_HEADER_PREFIX = "x-tollgate-";

/** The x-tollgate-* headers authz sets: three request headers for Envoy only, one response header for the client. */
export const TOLLGATE_HEADERS = {
  /** Request: the provider; the route is chosen on it (clear_route_cache). */
  provider: "x-tollgate-provider",
  /** Request: the provider's model id; the usage filter rewrites the body's `model` to it. */
  upstreamModel: "x-tollgate-upstream-model",
  /** Request: set (to STREAM_HEADER_ON) only for streams; the usage filter then forces include_usage. */
  stream: "x-tollgate-stream",
  /** Response: the decision id, so a client can quote it when disputing a charge. */
  decisionId: "x-tollgate-decision-id",
} as const;

/** The value of `x-tollgate-stream` on a streaming request (the usage filter compares against it). */
export const STREAM_HEADER_ON = "1";

/** Request headers authz sets for Envoy alone; every provider route removes them before the request goes upstream. */
export const INTERNAL_REQUEST_HEADERS: readonly string[] = [
  TOLLGATE_HEADERS.provider,
  TOLLGATE_HEADERS.upstreamModel,
  TOLLGATE_HEADERS.stream,
];

/**
 * Client-sent request headers through which a caller could steer Envoy, never honoured from a client. Envoy's router
 * reads its retry policy (repeat a billable request: `x-envoy-retry-on`, `-max-retries`, hedging, …) and its timeouts
 * (`x-envoy-upstream-rq-timeout-ms`, `-per-try-timeout-ms`, `-stream-duration-ms`, …) from request headers; the
 * connection manager strips most of them only from requests it counts as external (before Envoy 1.33, any RFC 1918
 * peer counted as internal), and `x-envoy-upstream-stream-duration-ms` from none. So every provider route config lists
 * them as `internal_only_headers` (removed at the connection manager, before any filter, from every request: the
 * `internal_address_config` counts no client as internal) and the provider virtual host removes them again. The last
 * is the client's forged `x-envoy-auth-partial-body` (Envoy's own marker exists only inside the CheckRequest).
 */
export const ENVOY_CONTROL_REQUEST_HEADERS: readonly string[] = [
  // Retries and hedging: each would send the same request to the provider again.
  "x-envoy-retry-on",
  "x-envoy-retry-grpc-on",
  "x-envoy-max-retries",
  "x-envoy-retriable-status-codes",
  "x-envoy-retriable-header-names",
  "x-envoy-hedge-on-per-try-timeout",
  // Timeouts: each would cut (or stretch) a provider request the client is billed for.
  "x-envoy-upstream-rq-timeout-ms",
  "x-envoy-upstream-rq-per-try-timeout-ms",
  "x-envoy-expected-rq-timeout-ms",
  "x-envoy-upstream-stream-duration-ms",
  "x-envoy-upstream-rq-timeout-alt-response",
  // Stats, tracing and identity Envoy takes from a trusted downstream only.
  "x-envoy-upstream-alt-stat-name",
  "x-envoy-force-trace",
  "x-envoy-ip-tags",
  "x-envoy-original-url",
  "x-envoy-decorator-operation",
  "x-envoy-downstream-service-cluster",
  "x-envoy-downstream-service-node",
  // ext_authz's partial-body marker, as a client would forge it.
  "x-envoy-auth-partial-body",
];

/**
 * Where CDNs, load balancers and proxies in front of Envoy put the client's address besides `x-forwarded-for`,
 * `forwarded` and `x-real-ip`: Cloudflare, Akamai / Cloudflare Enterprise, Fastly, Azure Front Door and App Gateway,
 * Rackspace / Riverbed, ingress controllers and a proxy that keeps the original X-Forwarded-For.
 */
export const CLIENT_ADDRESS_REQUEST_HEADERS: readonly string[] = [
  "cf-connecting-ip",
  "cf-connecting-ipv6",
  "cf-pseudo-ipv4",
  "true-client-ip",
  "fastly-client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "x-original-forwarded-for",
  "x-azure-clientip",
  "x-azure-socketip",
  "x-forwarded",
  "forwarded-for",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "x-proxyuser-ip",
  "client-ip",
];

/**
 * Request headers no provider receives, removed by the provider virtual host's `request_headers_to_remove`: the
 * client's address (`x-forwarded-for` with the peer Envoy appended, `x-envoy-external-address`, the `forwarded` /
 * `x-real-ip` a client or a terminator in front may send, and CLIENT_ADDRESS_REQUEST_HEADERS); and the client-sent headers that would pick another
 * organisation or project on Tollgate's own provider account (`openai-organization`, `openai-project`,
 * `x-goog-user-project`); and ENVOY_CONTROL_REQUEST_HEADERS once more. `x-request-id` is kept: Envoy generates it
 * (a client's is replaced), it identifies nothing about the client, and the access logs read it from the same header
 * map that route removal edits.
 */
export const PROVIDER_REMOVED_REQUEST_HEADERS: readonly string[] = [
  "x-forwarded-for",
  "x-envoy-external-address",
  "forwarded",
  "x-real-ip",
  ...CLIENT_ADDRESS_REQUEST_HEADERS,
  "openai-organization",
  "openai-project",
  "x-goog-user-project",
  // A browser sends the web console's session cookie to every port of its host (cookies are not port-scoped), the
  // data plane's included when it shares the host name: no client cookie is a provider's business.
  "cookie",
  // Read by the router after this removal: caught here even from a peer an operator's internal_address_config trusts.
  ...ENVOY_CONTROL_REQUEST_HEADERS,
];

/**
 * Request headers every provider request carries, set (OVERWRITE_IF_EXISTS_OR_ADD) by the provider virtual host's
 * `request_headers_to_add`: `accept-encoding: identity`, so providers answer uncompressed and the usage filter reads
 * plain JSON / SSE. Removing the client's value would not do: a request without Accept-Encoding allows any coding
 * (RFC 9110 §12.5.3). Clients still get uncompressed responses.
 */
export const PROVIDER_SET_REQUEST_HEADERS: Readonly<Record<string, string>> = { "accept-encoding": "identity" };

/**
 * ext_authz `with_request_body.max_request_bytes`: authz sees at most this much body. Envoy marks a body partial only
 * when it buffered more than it sends, so a body that filled the buffer exactly arrives marked complete although
 * more may follow: authz treats any body that reaches this size as cut (413).
 */
export const AUTHZ_BODY_LIMIT_BYTES = 1_048_576;

/** Envoy adds this header ("true"/"false") to a CheckRequest when `allow_partial_message` cut the body at `max_request_bytes`. */
export const PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body";

// ---------------------------------------------------------------------------------------------------------------
// Envoy's JSON file access log (`json_format` in envoy/*.yaml): the edge writes it, `tollgate reconcile` reads it.
// ---------------------------------------------------------------------------------------------------------------

/** The file access log's keys, as `json_format` names them; reconcile reads these back line by line. */
export const FILE_LOG_KEYS = {
  startTime: "start_time",
  requestId: "request_id",
  responseCode: "response_code",
  durationMs: "duration_ms",
  responseFlags: "response_flags",
  /**
   * `%REQUEST_TX_DURATION%`: ms from the start to the last request byte sent upstream; absent ("-", null) when the
   * request never went upstream whole. The meter bills a request without usage its prompt estimate only when set.
   */
  requestTxDurationMs: "request_tx_duration_ms",
  /** `%DYNAMIC_METADATA(<AUTHZ_METADATA_NAMESPACE>)%`: the ext_authz namespace as an object. */
  authz: "authz",
  /** `%DYNAMIC_METADATA(<USAGE_METADATA_NAMESPACE>)%`: the usage namespace as an object, or null. */
  usage: "usage",
  upstreamHost: "upstream_host",
  logType: "log_type",
} as const;

/** A key of the JSON file access log. */
export type FileLogKey = (typeof FILE_LOG_KEYS)[keyof typeof FILE_LOG_KEYS];
