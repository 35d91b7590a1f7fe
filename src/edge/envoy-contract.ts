// What the local edge copies from envoy/envoy.local.yaml. Each constant names the field it mirrors, and
// test/unit/edge/envoy-contract.test.ts parses the YAML and fails when the two drift apart: change both together.
// Names shared beyond the edge (headers, metadata namespaces, file-log keys) come from src/contract.
import {
  AUTHZ_BODY_LIMIT_BYTES,
  AUTHZ_METADATA_NAMESPACE,
  FILE_LOG_KEYS as L,
  INTERNAL_REQUEST_HEADERS,
  TOLLGATE_HEADER_PREFIX,
  USAGE_METADATA_NAMESPACE,
  type FileLogKey,
} from "../contract/index.js";

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
  { prefix: TOLLGATE_HEADER_PREFIX },
];

/** ext_authz `with_request_body.max_request_bytes`: authz sees at most this much body (partial beyond). */
export const AUTHZ_MAX_REQUEST_BYTES = AUTHZ_BODY_LIMIT_BYTES;

/** ext_authz `grpc_service.timeout`: past it the check is a failure, i.e. `status_on_error`. */
export const AUTHZ_TIMEOUT_MS = 1_000;

/** ext_authz `status_on_error` (failure_mode_allow is false: an authz failure never lets a request through). */
export const AUTHZ_STATUS_ON_ERROR = 503;

/** Listener `per_connection_buffer_limit_bytes`: the most request body Envoy (and the Lua rewrite) will buffer. */
export const REQUEST_BUFFER_LIMIT_BYTES = 2_097_152;

/** Route `request_headers_to_remove` on every provider route: internal headers never reach a provider. */
export const ROUTE_REMOVED_HEADERS: readonly string[] = INTERNAL_REQUEST_HEADERS;

/** The `no_route` direct response body (status 503, content-type application/json). */
export const NO_ROUTE_BODY =
  '{"error":{"message":"no route","type":"tollgate_error","param":null,"code":"unavailable"}}';

/** HttpConnectionManager `stream_idle_timeout`: a stream with no bytes either way this long is cut (flag SI). */
export const STREAM_IDLE_TIMEOUT_MS = 300_000;

/** HttpConnectionManager `request_headers_timeout`: request headers must be in by then (else Envoy's 408). */
export const REQUEST_HEADERS_TIMEOUT_MS = 10_000;

/** HttpConnectionManager `server_name`: Envoy overwrites the upstream's Server header with it. */
export const SERVER_NAME = "tollgate";

/** ALS `common_config.log_name`: the meter may tell feeds apart by it. */
export const ALS_LOG_NAME = "tollgate";

/** ALS `buffer_flush_interval`: entries are batched at most this long. */
export const ALS_FLUSH_INTERVAL_MS = 1_000;

/** The file access log `path` in envoy.local.yaml; the edge writes the same file by default. */
export const LOCAL_FILE_LOG_PATH = "/tmp/tollgate-envoy-access.json";

/** The file access log `json_format`, key → command operator, in file order. `tollgate reconcile` reads these keys. */
export const FILE_LOG_FORMAT: Readonly<Record<FileLogKey, string>> = {
  [L.startTime]: "%START_TIME%",
  [L.requestId]: "%REQ(X-REQUEST-ID)%",
  [L.responseCode]: "%RESPONSE_CODE%",
  [L.durationMs]: "%DURATION%",
  [L.responseFlags]: "%RESPONSE_FLAGS%",
  [L.requestTxDurationMs]: "%REQUEST_TX_DURATION%",
  [L.authz]: `%DYNAMIC_METADATA(${AUTHZ_METADATA_NAMESPACE})%`,
  [L.usage]: `%DYNAMIC_METADATA(${USAGE_METADATA_NAMESPACE})%`,
  [L.upstreamHost]: "%UPSTREAM_HOST%",
  [L.logType]: "%ACCESS_LOG_TYPE%",
};
