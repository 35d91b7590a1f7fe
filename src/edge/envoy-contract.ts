// What the local edge copies from envoy/envoy.local.yaml. Each constant names the field it mirrors, and
// test/unit/edge/envoy-contract.test.ts parses the YAML and fails when the two drift apart: change both together.

/** One `allowed_headers` StringMatcher (the kinds envoy.yaml uses). */
export type HeaderPattern = { exact: string } | { prefix: string };

/** ext_authz `allowed_headers.patterns`: only matching request headers reach authz (pseudo-headers included). */
export const AUTHZ_ALLOWED_HEADERS: readonly HeaderPattern[] = [
  { exact: "authorization" },
  { exact: "content-type" },
  { exact: "x-request-id" },
  { exact: ":method" },
  { exact: ":path" },
  { exact: ":authority" },
  // Client-sent x-tollgate-* reach authz so it can list them in headers_to_remove.
  { prefix: "x-tollgate-" },
];

/** ext_authz `with_request_body.max_request_bytes`: authz sees at most this much body (partial beyond). */
export const AUTHZ_MAX_REQUEST_BYTES = 1_048_576;

/** ext_authz `grpc_service.timeout`: past it the check is a failure, i.e. `status_on_error`. */
export const AUTHZ_TIMEOUT_MS = 1_000;

/** ext_authz `status_on_error` (failure_mode_allow is false: an authz failure never lets a request through). */
export const AUTHZ_STATUS_ON_ERROR = 503;

/** Listener `per_connection_buffer_limit_bytes`: the most request body Envoy (and the Lua rewrite) will buffer. */
export const REQUEST_BUFFER_LIMIT_BYTES = 2_097_152;

/** Route `request_headers_to_remove` on every provider route: internal headers never reach a provider. */
export const ROUTE_REMOVED_HEADERS: readonly string[] = ["x-tollgate-provider", "x-tollgate-upstream-model", "x-tollgate-stream"];

/** The providers envoy.local.yaml routes on `x-tollgate-provider` (one cluster each). */
export const ROUTED_PROVIDERS: readonly string[] = ["openai", "anthropic", "google", "deepseek"];

/** The `no_route` direct response body (status 503, content-type application/json). */
export const NO_ROUTE_BODY = '{"error":{"message":"no route","type":"tollgate_error","param":null,"code":"unavailable"}}';

/** HttpConnectionManager `server_name`: Envoy overwrites the upstream's Server header with it. */
export const SERVER_NAME = "tollgate";

/** ALS `common_config.log_name`: the meter may tell feeds apart by it. */
export const ALS_LOG_NAME = "tollgate";

/** ALS `buffer_flush_interval`: entries are batched at most this long. */
export const ALS_FLUSH_INTERVAL_MS = 1_000;

/** The file access log `path` in envoy.local.yaml; the edge writes the same file by default. */
export const LOCAL_FILE_LOG_PATH = "/tmp/tollgate-envoy-access.json";

/** The file access log `json_format`, key → command operator, in file order. `tollgate reconcile` reads these keys. */
export const FILE_LOG_FORMAT: Readonly<Record<string, string>> = {
  start_time: "%START_TIME%",
  request_id: "%REQ(X-REQUEST-ID)%",
  response_code: "%RESPONSE_CODE%",
  duration_ms: "%DURATION%",
  response_flags: "%RESPONSE_FLAGS%",
  authz: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%",
  usage: "%DYNAMIC_METADATA(tollgate.usage)%",
  upstream_host: "%UPSTREAM_HOST%",
  log_type: "%ACCESS_LOG_TYPE%",
};

/** The dynamic-metadata namespace the usage filter writes (`tollgate.usage`). */
export const USAGE_METADATA_NAMESPACE = "tollgate.usage";

/** Envoy marks a CheckRequest whose body was cut at max_request_bytes with this header ("true"/"false"). */
export const PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body";
