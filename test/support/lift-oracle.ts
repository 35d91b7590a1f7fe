import type { CheckRequest } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import type { LiftedRequest } from "../../src/dataplane/authz/check-request.js";
import { AUTHZ_BODY_LIMIT_BYTES, PARTIAL_BODY_HEADER } from "../../src/contract/index.js";
import type { RequestBody } from "../../src/domain/chat-request.js";

/** Raw header bytes as ISO-8859-1, one code point per byte (WHATWG's "latin1" label would mean windows-1252). */
const latin1 = {
  decode: (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1"),
};

/**
 * The reference lifter: what admission needs, read from protobuf-es's full decode of a CheckRequest. Production
 * lifts straight from the wire bytes (src/dataplane/authz/check-request.ts); tests require both to agree. Handles
 * both header encodings Envoy may send (the `headers` map, where repeated values arrive comma-joined, and
 * `header_map` with `encode_raw_headers`) and both body encodings (`body` text, `raw_body` bytes with
 * `pack_as_bytes`), honouring the partial-body marker.
 */
export function liftDecodedCheckRequest(request: CheckRequest): LiftedRequest {
  const http = request.attributes?.request?.http;
  const authorization: string[] = [];
  const headerNames: string[] = [];
  let partial = false;
  const raw = http?.headerMap?.headers ?? [];
  if (raw.length > 0) {
    for (const header of raw) {
      const name = header.key.toLowerCase();
      const value = header.value !== "" ? header.value : latin1.decode(header.rawValue);
      headerNames.push(name);
      if (name === "authorization") authorization.push(value);
      else if (name === PARTIAL_BODY_HEADER) partial = value === "true";
    }
  } else if (http) {
    for (const name in http.headers) {
      const lower = name.toLowerCase();
      headerNames.push(lower);
      const value = http.headers[name]!;
      // A key never contains a comma, so a comma means Envoy joined two Authorization headers.
      if (lower === "authorization") authorization.push(...value.split(","));
      else if (lower === PARTIAL_BODY_HEADER) partial = value === "true";
    }
  }
  const fullPath = http?.path ?? "";
  const q = fullPath.indexOf("?");
  let body: RequestBody;
  // A body that reaches ext_authz's limit is cut whatever the marker says (Envoy marks an exactly full buffer "false").
  const reachedLimit =
    (http?.rawBody.length ?? 0) >= AUTHZ_BODY_LIMIT_BYTES ||
    Buffer.byteLength(http?.body ?? "") >= AUTHZ_BODY_LIMIT_BYTES;
  if (partial || reachedLimit) body = { kind: "partial" };
  else if (http && http.rawBody.length > 0) body = { kind: "bytes", bytes: http.rawBody };
  else if (http && http.body !== "") body = { kind: "text", text: http.body };
  else body = { kind: "absent" };
  return {
    admission: {
      method: http?.method ?? "",
      path: q === -1 ? fullPath : fullPath.slice(0, q),
      authorization,
      body,
    },
    tollgateHeaders: headerNames.filter((name) => name.startsWith("x-tollgate-")),
    query: q === -1 ? "" : fullPath.slice(q + 1),
  };
}
