import * as grpc from "@grpc/grpc-js";
import { PARTIAL_BODY_HEADER } from "../../src/contract/index.js";
import { AUTHZ_ALLOWED_HEADERS } from "../../src/edge/envoy-contract.js";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  HeaderValueOption_HeaderAppendAction,
  type HeaderValueOption,
} from "../../src/gen/envoy/config/core/v3/base_pb.js";
import {
  Authorization,
  CheckRequestSchema,
  type CheckRequest,
  type CheckResponse,
} from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { grpcDefinition } from "../../src/dataplane/grpc/grpc-server.js";

const AuthorizationClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");

/** A real gRPC client for envoy.service.auth.v3.Authorization, as Envoy's ext_authz filter would call it. */
export interface AuthzClient {
  check(request: CheckRequest): Promise<CheckResponse>;
  close(): void;
}

/** Connects to an authz server at `address` ("127.0.0.1:PORT"). */
export function connectAuthz(address: string): AuthzClient {
  const client = new AuthorizationClient(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 8 * 1024 * 1024,
  }) as unknown as grpc.Client & {
    check(req: CheckRequest, cb: (err: grpc.ServiceError | null, res: CheckResponse) => void): void;
  };
  return {
    check: (request) =>
      new Promise((resolve, reject) => client.check(request, (err, res) => (err ? reject(err) : resolve(res)))),
    close: () => client.close(),
  };
}

/** ext_authz `allowed_headers` (envoy.yaml, pinned by test/unit/edge/envoy-contract.test.ts). */
function allowedHeader(name: string): boolean {
  return AUTHZ_ALLOWED_HEADERS.some((p) => ("exact" in p ? name === p.exact : name.startsWith(p.prefix)));
}

/** Options for an Envoy-shaped CheckRequest. */
export interface CheckShape {
  method?: string;
  path?: string;
  /** Header values; an array sends the header more than once (comma-joined as Envoy's `headers` map does). */
  headers?: Record<string, string | string[]>;
  body?: string | Uint8Array;
  /** Send the body as raw_body bytes (pack_as_bytes: true), as envoy.yaml configures. */
  asBytes?: boolean;
  /** Use header_map (encode_raw_headers) instead of the headers map. */
  rawHeaders?: boolean;
  partialBody?: boolean;
}

/**
 * Builds a CheckRequest the way Envoy does with envoy.yaml: lower-cased header names, only the headers ext_authz's
 * `allowed_headers` lets through (pseudo-headers included, so no :scheme, user-agent or accept), the partial-body
 * marker whenever a body was buffered ("true" when `partialBody`), and the body as text or raw bytes.
 */
export function envoyCheckRequest(shape: CheckShape): CheckRequest {
  const method = shape.method ?? "POST";
  const path = shape.path ?? "/v1/chat/completions";
  const headers: Array<[string, string]> = [
    [":authority", "gateway.example.com"],
    [":method", method],
    [":path", path],
    [":scheme", "https"],
    ["user-agent", "OpenAI/JS 6.0.0"],
    ["accept", "application/json"],
    ["x-request-id", "1b2c3d4e-0000-4000-8000-000000000000"],
    ["x-forwarded-proto", "https"],
  ];
  if (shape.body !== undefined) headers.push(["content-type", "application/json"]);
  for (const [name, value] of Object.entries(shape.headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) headers.push([name.toLowerCase(), v]);
  }
  const bodyBytes = typeof shape.body === "string" ? new TextEncoder().encode(shape.body) : shape.body;
  // What the client sent, filtered as ext_authz filters it; Envoy adds the marker after filtering.
  const sent = headers.filter(([name]) => name === PARTIAL_BODY_HEADER || allowedHeader(name));
  if (!sent.some(([name]) => name === PARTIAL_BODY_HEADER) && (shape.partialBody || (bodyBytes?.length ?? 0) > 0)) {
    sent.push([PARTIAL_BODY_HEADER, shape.partialBody ? "true" : "false"]);
  }
  const map: Record<string, string> = {};
  for (const [k, v] of sent) map[k] = k in map ? `${map[k]},${v}` : v;
  const asBytes = shape.asBytes ?? typeof shape.body !== "string";
  return create(CheckRequestSchema, {
    attributes: {
      source: {
        address: {
          address: {
            case: "socketAddress",
            value: { address: "203.0.113.7", portSpecifier: { case: "portValue", value: 51234 } },
          },
        },
      },
      destination: {
        address: {
          address: {
            case: "socketAddress",
            value: { address: "10.0.0.5", portSpecifier: { case: "portValue", value: 10000 } },
          },
        },
      },
      request: {
        http: {
          id: "9876543210",
          method,
          path,
          host: "gateway.example.com",
          scheme: "https",
          protocol: "HTTP/2",
          size: BigInt(bodyBytes?.length ?? 0),
          headers: shape.rawHeaders ? {} : map,
          headerMap: shape.rawHeaders
            ? { headers: sent.map(([key, value]) => ({ key, rawValue: new TextEncoder().encode(value) })) }
            : undefined,
          body: shape.body !== undefined && !asBytes && typeof shape.body === "string" ? shape.body : "",
          rawBody: asBytes && bodyBytes ? bodyBytes : new Uint8Array(),
        },
      },
    },
  });
}

/** Reads a CheckRequest fixture in protobuf JSON (as Envoy's docs show them), replacing `${NAME}` placeholders. */
export function checkRequestFromJson(json: JsonValue, vars: Record<string, string> = {}): CheckRequest {
  const text = JSON.stringify(json).replace(/\$\{([A-Z_]+)\}/g, (_m, name: string) => vars[name] ?? "");
  return fromJson(CheckRequestSchema, JSON.parse(text));
}

/** The parts of a CheckResponse tests assert on, in plain data. */
export interface CheckOutcome {
  allowed: boolean;
  grpcCode: number;
  httpStatus: number;
  body: string;
  error?: { message: string; type: string; param: string | null; code: string };
  headers: Record<string, string>;
  /**
   * How Envoy is told to apply each header mutation, as `append_action` and the deprecated `append`: the contract is
   * `OVERWRITE_IF_EXISTS_OR_ADD` with `append` absent (any Envoy version replaces, never adds a second value).
   */
  headerModes: string[];
  headersToRemove: string[];
  responseHeaders: Record<string, string>;
  metadata: Record<string, unknown>;
}

/** A header mutation's append_action and deprecated append field, e.g. `OVERWRITE_IF_EXISTS_OR_ADD, append unset`. */
function headerMode(h: HeaderValueOption): string {
  const action = HeaderValueOption_HeaderAppendAction[h.appendAction];
  return `${action}, append ${h.append === undefined ? "unset" : String(h.append)}`;
}

/** The header mode every mutation tollgate sends must have. */
export const OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD, append unset";

/** Flattens a CheckResponse for assertions. */
export function outcome(response: CheckResponse): CheckOutcome {
  const http = response.httpResponse;
  const headers: Record<string, string> = {};
  const headerModes: string[] = [];
  const responseHeaders: Record<string, string> = {};
  let body = "";
  let httpStatus = 200;
  let headersToRemove: string[] = [];
  if (http.case === "okResponse") {
    for (const h of http.value.headers) {
      headers[h.header!.key] = h.header!.value;
      headerModes.push(headerMode(h));
    }
    for (const h of http.value.responseHeadersToAdd) {
      responseHeaders[h.header!.key] = h.header!.value;
      headerModes.push(headerMode(h));
    }
    headersToRemove = http.value.headersToRemove;
  } else if (http.case === "deniedResponse") {
    httpStatus = http.value.status?.code ?? 403;
    body = http.value.body;
    for (const h of http.value.headers) {
      headers[h.header!.key] = h.header!.value;
      headerModes.push(headerMode(h));
    }
  }
  let error: CheckOutcome["error"];
  try {
    error = body ? JSON.parse(body).error : undefined;
  } catch {
    error = undefined;
  }
  return {
    allowed: http.case === "okResponse",
    grpcCode: response.status?.code ?? 0,
    httpStatus,
    body,
    error,
    headers,
    headerModes,
    headersToRemove,
    responseHeaders,
    metadata: (response.dynamicMetadata ?? {}) as Record<string, unknown>,
  };
}
