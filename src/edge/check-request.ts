import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CheckRequestSchema, type CheckRequest } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { PARTIAL_BODY_HEADER } from "../contract/index.js";
import { AUTHZ_ALLOWED_HEADERS, AUTHZ_MAX_REQUEST_BYTES, type HeaderPattern } from "./envoy-contract.js";

/** A downstream request as the edge saw it: the inputs Envoy's ext_authz filter builds a CheckRequest from. */
export interface DownstreamRequest {
  method: string;
  /** `:path` as received, query string included. */
  path: string;
  authority: string;
  scheme: "http" | "https";
  protocol: string;
  /** Header name/value pairs in arrival order; names may repeat. */
  headers: ReadonlyArray<readonly [string, string]>;
  /** The whole request body; only the first `maxRequestBytes` go to authz. */
  body: Uint8Array;
  /**
   * How much body Envoy's ext_authz buffer held when it sent the Check: the first chunk boundary at or past
   * `maxRequestBytes` (default: the whole body). Envoy marks the body partial only when this exceeds what it sends.
   */
  bufferedBytes?: number;
  remote: { address: string; port: number };
  local: { address: string; port: number };
  /** Envoy's numeric stream id, as a decimal string. */
  streamId: string;
  startMs: number;
}

/** Options that mirror the ext_authz config; the defaults are envoy.local.yaml's. */
export interface CheckRequestOptions {
  /** Empty means every header, as Envoy sends when allowed_headers is unset. */
  allowedHeaders?: readonly HeaderPattern[];
  maxRequestBytes?: number;
}

/**
 * Builds the CheckRequest Envoy's ext_authz sends for envoy.yaml's settings, so authz is exercised locally on the
 * exact shape it gets in production: lower-cased names with pseudo-headers, repeated headers comma-joined, only
 * the allowed headers, the body as raw bytes (pack_as_bytes) cut at max_request_bytes (allow_partial_message) with
 * the partial-body marker Envoy adds whenever a body was buffered (a client's own is never copied, whatever the list).
 */
export function buildCheckRequest(request: DownstreamRequest, options: CheckRequestOptions = {}): CheckRequest {
  const patterns = options.allowedHeaders ?? AUTHZ_ALLOWED_HEADERS;
  const allowed = (name: string) =>
    patterns.length === 0 || patterns.some((p) => ("exact" in p ? name === p.exact : name.startsWith(p.prefix)));
  const max = options.maxRequestBytes ?? AUTHZ_MAX_REQUEST_BYTES;
  const pseudo: Array<[string, string]> = [
    [":authority", request.authority],
    [":path", request.path],
    [":method", request.method],
    [":scheme", request.scheme],
  ];
  const headers: Record<string, string> = {};
  for (const [rawName, value] of [...pseudo, ...request.headers]) {
    const name = rawName.toLowerCase();
    // Envoy's setHttpRequest skips a client's partial-body header before any allow list: only its own marker counts.
    if (name === PARTIAL_BODY_HEADER || !allowed(name)) continue;
    headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  const hasBody = request.body.length > 0;
  const buffered = Math.min(request.bufferedBytes ?? request.body.length, request.body.length);
  const sent = Math.min(buffered, max);
  const rawBody = request.body.subarray(0, sent);
  // Envoy writes the marker into the CheckRequest after header filtering, so it is present whatever the allow list.
  // It compares what it sends with what it buffered: a buffer filled to exactly the limit reads "false" although
  // more body may follow (authz treats reaching the limit as cut).
  if (hasBody) headers[PARTIAL_BODY_HEADER] = sent !== buffered ? "true" : "false";
  const socket = (a: { address: string; port: number }) => ({
    address: {
      case: "socketAddress" as const,
      value: { address: a.address, portSpecifier: { case: "portValue" as const, value: a.port } },
    },
  });
  return create(CheckRequestSchema, {
    attributes: {
      source: { address: socket(request.remote) },
      destination: { address: socket(request.local) },
      request: {
        time: timestampFromMs(request.startMs),
        http: {
          id: request.streamId,
          method: request.method,
          path: request.path,
          host: request.authority,
          scheme: request.scheme,
          protocol: request.protocol,
          size: BigInt(request.body.length),
          headers,
          rawBody: new Uint8Array(rawBody),
        },
      },
    },
  });
}
