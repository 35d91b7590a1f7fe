import { CheckRequestSchema } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import {
  AttributeContext_HttpRequestSchema,
  AttributeContext_RequestSchema,
  AttributeContextSchema,
} from "../../gen/envoy/service/auth/v3/attribute_context_pb.js";
import { HeaderMapSchema, HeaderValueSchema } from "../../gen/envoy/config/core/v3/base_pb.js";
import type { AdmissionRequest } from "../../domain/admission.js";
import { WireCursor } from "../wire/index.js";
import type { RequestBody } from "../../domain/chat-request.js";
import { AUTHZ_BODY_LIMIT_BYTES, PARTIAL_BODY_HEADER, TOLLGATE_HEADER_PREFIX } from "../../contract/index.js";

/** The request as Check needs it: admission input plus the header names the client sent. */
export interface LiftedRequest {
  admission: AdmissionRequest;
  /** Lower-cased names of the client's x-tollgate-* headers, which Check strips. */
  tollgateHeaders: string[];
  /** The query string (without "?"), kept across a path rewrite. */
  query: string;
}

// The path to what admission reads, by field number from the generated descriptors (never retyped):
// CheckRequest.attributes → AttributeContext.request → Request.http → HttpRequest{method, path, headers,
// header_map → HeaderMap.headers → HeaderValue{key, value, raw_value}, body, raw_body}.
const ATTRIBUTES = CheckRequestSchema.field.attributes!.number;
const REQUEST = AttributeContextSchema.field.request!.number;
const HTTP = AttributeContext_RequestSchema.field.http!.number;
const H = AttributeContext_HttpRequestSchema.field;
const METHOD = H.method!.number;
const PATH = H.path!.number;
const HEADERS = H.headers!.number;
const HEADER_MAP = H.headerMap!.number;
const BODY = H.body!.number;
const RAW_BODY = H.rawBody!.number;
const HEADER_MAP_HEADERS = HeaderMapSchema.field.headers!.number;
const HV_KEY = HeaderValueSchema.field.key!.number;
const HV_VALUE = HeaderValueSchema.field.value!.number;
const HV_RAW_VALUE = HeaderValueSchema.field.rawValue!.number;
const MAP_KEY = 1;
const MAP_VALUE = 2;

/** What one header encoding said about the headers Check reads. */
interface HeaderFacts {
  authorization: string[];
  partial: boolean;
  tollgate: string[];
}

/** What the walk collects; repeated occurrences of a message merge into it, as protobuf parsing requires. */
interface Collected {
  method: string;
  path: string;
  body: Uint8Array | undefined;
  rawBody: Uint8Array | undefined;
  /** From the `headers` map (repeated values comma-joined by Envoy). */
  map: HeaderFacts;
  /** From `header_map` (encode_raw_headers); when it carried any header, it is the request's headers. */
  raw: HeaderFacts | undefined;
}

/**
 * Reads the fields admission needs straight from a CheckRequest's wire bytes and skips the rest (peers, TLS,
 * metadata, context extensions, and the values of headers admission does not read) without decoding it:
 * protobuf-es's full decode built a few hundred objects per Check, most of them never read.
 * `test/unit/check-request-wire.test.ts` requires the result to equal lifting protobuf-es's decode of the same bytes,
 * for random requests. Where protobuf-es refuses the whole request (invalid UTF-8 in any string: a 503 for one odd
 * header value), this reads strings with replacement characters, except the body, which is never altered.
 */
export function liftCheckRequest(bytes: Uint8Array): LiftedRequest {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const c: Collected = {
    method: "",
    path: "",
    body: undefined,
    rawBody: undefined,
    map: { authorization: [], partial: false, tollgate: [] },
    raw: undefined,
  };
  // Not valid protobuf: MalformedMessage, so grpc-js answers the call with an error and Envoy fails closed.
  const r = new WireCursor(buf, "CheckRequest");
  while (r.pos < buf.length) {
    if (r.field(buf.length) !== ATTRIBUTES) r.skip(buf.length);
    else
      for (const attributes = r.enter(buf.length); r.pos < attributes; ) {
        if (r.field(attributes) !== REQUEST) r.skip(attributes);
        else
          for (const request = r.enter(attributes); r.pos < request; ) {
            if (r.field(request) !== HTTP) r.skip(request);
            else readHttp(r, r.enter(request), c);
          }
      }
  }
  return lift(c);
}

function readHttp(r: WireCursor, end: number, c: Collected): void {
  while (r.pos < end) {
    switch (r.field(end)) {
      case METHOD:
        c.method = r.utf8(end);
        break;
      case PATH:
        c.path = r.utf8(end);
        break;
      case BODY:
        c.body = r.bytes(end);
        break;
      case RAW_BODY:
        c.rawBody = r.bytes(end);
        break;
      case HEADERS:
        readMapEntry(r, r.enter(end), c);
        break;
      case HEADER_MAP:
        for (const map = r.enter(end); r.pos < map; ) {
          if (r.field(map) !== HEADER_MAP_HEADERS) r.skip(map);
          else readHeaderValue(r, r.enter(map), c);
        }
        break;
      default:
        r.skip(end);
    }
  }
}

/** One `headers` map entry: only the names Check reads, and their values, are decoded. */
function readMapEntry(r: WireCursor, end: number, c: Collected): void {
  let keyStart = 0;
  let keyEnd = 0;
  let valueStart = 0;
  let valueEnd = 0;
  while (r.pos < end) {
    const field = r.field(end);
    if (field === MAP_KEY) (keyEnd = r.payload(end)), (keyStart = r.start);
    else if (field === MAP_VALUE) (valueEnd = r.payload(end)), (valueStart = r.start);
    else r.skip(end);
  }
  // A key never contains a comma, so a comma in Authorization means Envoy joined two of them.
  record(c.map, r.buf, keyStart, keyEnd, valueStart, valueEnd, "utf8", true);
}

/** One `header_map` HeaderValue: `value`, or `raw_value` as Latin-1 when value is empty (encode_raw_headers). */
function readHeaderValue(r: WireCursor, end: number, c: Collected): void {
  let keyStart = 0;
  let keyEnd = 0;
  let valueStart = 0;
  let valueEnd = 0;
  let rawStart = 0;
  let rawEnd = 0;
  while (r.pos < end) {
    const field = r.field(end);
    if (field === HV_KEY) (keyEnd = r.payload(end)), (keyStart = r.start);
    else if (field === HV_VALUE) (valueEnd = r.payload(end)), (valueStart = r.start);
    else if (field === HV_RAW_VALUE) (rawEnd = r.payload(end)), (rawStart = r.start);
    else r.skip(end);
  }
  c.raw ??= { authorization: [], partial: false, tollgate: [] };
  if (valueEnd > valueStart) record(c.raw, r.buf, keyStart, keyEnd, valueStart, valueEnd, "utf8", false);
  else record(c.raw, r.buf, keyStart, keyEnd, rawStart, rawEnd, "latin1", false);
}

/** Records one header if Check reads it; its value (bytes start..end) is decoded only then. */
function record(
  facts: HeaderFacts,
  buf: Buffer,
  keyStart: number,
  keyEnd: number,
  start: number,
  end: number,
  encoding: "utf8" | "latin1",
  commaJoined: boolean,
): void {
  const kind = headerKind(buf, keyStart, keyEnd);
  if (kind === AUTHORIZATION) {
    const value = buf.toString(encoding, start, end);
    if (commaJoined) facts.authorization.push(...value.split(","));
    else facts.authorization.push(value);
  } else if (kind === PARTIAL) facts.partial = buf.toString(encoding, start, end) === "true";
  else if (kind === TOLLGATE) facts.tollgate.push(buf.toString("utf8", keyStart, keyEnd).toLowerCase());
}

const OTHER = 0;
const AUTHORIZATION = 1;
const PARTIAL = 2;
const TOLLGATE = 3;
const NAME_AUTHORIZATION = Buffer.from("authorization");
const NAME_PARTIAL = Buffer.from(PARTIAL_BODY_HEADER);
const PREFIX_TOLLGATE = Buffer.from(TOLLGATE_HEADER_PREFIX);

/** Which header a name is, compared case-insensitively on its bytes (header names are ASCII; nothing is decoded). */
function headerKind(buf: Buffer, start: number, end: number): number {
  const length = end - start;
  if (length === NAME_AUTHORIZATION.length && asciiLowerEquals(buf, start, NAME_AUTHORIZATION)) return AUTHORIZATION;
  if (length === NAME_PARTIAL.length && asciiLowerEquals(buf, start, NAME_PARTIAL)) return PARTIAL;
  if (length >= PREFIX_TOLLGATE.length && asciiLowerEquals(buf, start, PREFIX_TOLLGATE)) return TOLLGATE;
  return OTHER;
}

/** Whether `buf` at `start` holds `lower` (lower-case ASCII), ignoring the case of ASCII letters. */
function asciiLowerEquals(buf: Buffer, start: number, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    const b = buf[start + i]!;
    if ((b >= 0x41 && b <= 0x5a ? b | 0x20 : b) !== lower[i]) return false;
  }
  return true;
}

/**
 * Both header encodings Envoy may send (the `headers` map and `header_map` with `encode_raw_headers`; when
 * header_map has headers they are the request's) and both body encodings (`body` text, `raw_body` bytes with
 * `pack_as_bytes`), honouring the partial-body marker. A body that reaches the limit counts as cut even when marked
 * complete: Envoy says "false" when its buffer filled exactly, more of the body still coming.
 */
function lift(c: Collected): LiftedRequest {
  const headers = c.raw ?? c.map;
  const q = c.path.indexOf("?");
  let body: RequestBody;
  const reachedLimit =
    (c.rawBody?.length ?? 0) >= AUTHZ_BODY_LIMIT_BYTES || (c.body?.length ?? 0) >= AUTHZ_BODY_LIMIT_BYTES;
  if (headers.partial || reachedLimit) body = { kind: "partial" };
  else if (c.rawBody !== undefined && c.rawBody.length > 0) body = { kind: "bytes", bytes: c.rawBody };
  else if (c.body !== undefined && c.body.length > 0) body = textBody(c.body);
  else body = { kind: "absent" };
  return {
    admission: {
      method: c.method,
      path: q === -1 ? c.path : c.path.slice(0, q),
      authorization: headers.authorization,
      body,
    },
    tollgateHeaders: headers.tollgate,
    query: q === -1 ? "" : c.path.slice(q + 1),
  };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** A `body` this long is not decoded here but where admission reads it (a worker thread): decoding 1 MiB takes ms. */
const DECODE_IN_LINE_BELOW = 64 * 1024;

/**
 * The `body` field is a proto string, so it should be UTF-8; when it is not, it goes on as bytes and admission
 * answers 400 "not valid UTF-8" (a lenient decode would have replaced the bad bytes and admitted a different body).
 */
function textBody(bytes: Uint8Array): RequestBody {
  if (bytes.length >= DECODE_IN_LINE_BELOW) return { kind: "utf8", bytes };
  try {
    return { kind: "text", text: strictUtf8.decode(bytes) };
  } catch {
    return { kind: "bytes", bytes };
  }
}
