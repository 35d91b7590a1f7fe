import { ListValueSchema, StructSchema, TimestampSchema, UInt32ValueSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AccessLogCommonSchema,
  AccessLogType,
  HTTPAccessLogEntrySchema,
  HTTPRequestPropertiesSchema,
  HTTPResponsePropertiesSchema,
  ResponseFlagsSchema,
  type ResponseFlags,
} from "../../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { MetadataSchema } from "../../gen/envoy/config/core/v3/base_pb.js";
import type { LogRecord } from "../../domain/metering.js";
import { AUTHZ_METADATA_NAMESPACE, FILE_LOG_KEYS as L, USAGE_METADATA_NAMESPACE } from "../../contract/index.js";
import { MalformedMessage, WireCursor } from "../wire/index.js";

/** A line or entry that cannot even be lifted into a LogRecord; the reason goes to the dead-letter table. */
export class UnreadableEntry extends Error {
  override name = "UnreadableEntry";
}

// Field numbers from the generated descriptors (never retyped).
const ENTRY = HTTPAccessLogEntrySchema.field;
const COMMON = AccessLogCommonSchema.field;
const F = {
  common: ENTRY.commonProperties!.number,
  request: ENTRY.request!.number,
  response: ENTRY.response!.number,
  startTime: COMMON.startTime!.number,
  duration: COMMON.duration!.number,
  lastTxByte: COMMON.timeToLastDownstreamTxByte!.number,
  lastUpstreamTxByte: COMMON.timeToLastUpstreamTxByte!.number,
  responseFlags: COMMON.responseFlags!.number,
  metadata: COMMON.metadata!.number,
  intermediate: COMMON.intermediateLogEntry!.number,
  logType: COMMON.accessLogType!.number,
  requestId: HTTPRequestPropertiesSchema.field.requestId!.number,
  responseCode: HTTPResponsePropertiesSchema.field.responseCode!.number,
  filterMetadata: MetadataSchema.field.filterMetadata!.number,
  // Timestamp and Duration both: seconds = 1, nanos = 2.
  seconds: TimestampSchema.field.seconds!.number,
  nanos: TimestampSchema.field.nanos!.number,
  wrapped: UInt32ValueSchema.field.value!.number,
  structFields: StructSchema.field.fields!.number,
  listValues: ListValueSchema.field.values!.number,
  nullValue: ValueSchema.field.nullValue!.number,
  numberValue: ValueSchema.field.numberValue!.number,
  stringValue: ValueSchema.field.stringValue!.number,
  boolValue: ValueSchema.field.boolValue!.number,
  structValue: ValueSchema.field.structValue!.number,
  listValue: ValueSchema.field.listValue!.number,
};

/**
 * ResponseFlags fields and the short names %RESPONSE_FLAGS% prints for them, in field order. `unauthorizedDetails` is
 * a message (UAEX when present); every other field is a bool.
 */
export const RESPONSE_FLAG_NAMES: ReadonlyArray<
  readonly [keyof Omit<ResponseFlags, "$typeName" | "$unknown">, string]
> = [
  ["failedLocalHealthcheck", "LH"],
  ["noHealthyUpstream", "UH"],
  ["upstreamRequestTimeout", "UT"],
  ["localReset", "LR"],
  ["upstreamRemoteReset", "UR"],
  ["upstreamConnectionFailure", "UF"],
  ["upstreamConnectionTermination", "UC"],
  ["upstreamOverflow", "UO"],
  ["noRouteFound", "NR"],
  ["delayInjected", "DI"],
  ["faultInjected", "FI"],
  ["rateLimited", "RL"],
  ["unauthorizedDetails", "UAEX"],
  ["rateLimitServiceError", "RLSE"],
  ["downstreamConnectionTermination", "DC"],
  ["upstreamRetryLimitExceeded", "URX"],
  ["streamIdleTimeout", "SI"],
  ["invalidEnvoyRequestHeaders", "IH"],
  ["downstreamProtocolError", "DPE"],
  ["upstreamMaxStreamDurationReached", "UMSDR"],
  ["responseFromCacheFilter", "RFCF"],
  ["noFilterConfigFound", "NFCF"],
  ["durationTimeout", "DT"],
  ["upstreamProtocolError", "UPE"],
  ["noClusterFound", "NC"],
  ["overloadManager", "OM"],
  ["dnsResolutionFailure", "DF"],
  ["downstreamRemoteReset", "DR"],
];
/** [field number, short name] in field order, looked up once (an entry's flags are rendered from it). */
const FLAG_FIELDS = RESPONSE_FLAG_NAMES.map(([name, flag]) => [ResponseFlagsSchema.field[name]!.number, flag] as const);
const FLAG_BY_FIELD = new Map(FLAG_FIELDS);
const UNAUTHORIZED_FIELD = ResponseFlagsSchema.field.unauthorizedDetails!.number;

/**
 * Lifts a gRPC ALS entry from its wire bytes: common_properties.access_log_type (or the older intermediate_log_entry
 * flag), the two dynamic-metadata namespaces from common_properties.metadata.filter_metadata (the only Structs
 * decoded), status, start and duration; everything else (addresses, TLS, headers, other namespaces) is skipped
 * undecoded. `test/unit/als-wire.test.ts` requires the same record as lifting protobuf-es's full decode, for random
 * entries. Bytes that are not an entry throw UnreadableEntry, so that entry alone is dead-lettered.
 */
export function recordFromHttpEntry(entry: Uint8Array): LogRecord {
  const buf = Buffer.isBuffer(entry) ? entry : Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength);
  try {
    return readEntry(new WireCursor(buf, "HTTPAccessLogEntry"), buf.length);
  } catch (error) {
    if (error instanceof MalformedMessage) throw new UnreadableEntry(error.message);
    throw error;
  }
}

function readEntry(r: WireCursor, end: number): LogRecord {
  let common = false;
  let intermediate = false;
  let logType = 0;
  let startMs = 0;
  let duration: number | undefined;
  let lastTxByte: number | undefined;
  let authz: Record<string, unknown> | undefined;
  let usage: Record<string, unknown> | undefined;
  let requestId = "";
  let status = 0;
  let upstreamRequestSent = false;
  // Most entries carry no flags: no set is made for them.
  let flags: Set<number> | undefined;
  while (r.pos < end) {
    const field = r.field(end);
    if (field === F.common) {
      common = true;
      for (const c = r.enter(end); r.pos < c; ) {
        switch (r.field(c)) {
          case F.startTime:
            startMs = timeMs(r, r.enter(c), Math.round);
            break;
          case F.duration:
            duration = timeMs(r, r.enter(c), Math.floor);
            break;
          case F.lastTxByte:
            lastTxByte = timeMs(r, r.enter(c), Math.floor);
            break;
          case F.lastUpstreamTxByte:
            upstreamRequestSent = true;
            r.skip(c);
            break;
          case F.responseFlags:
            flags = readFlags(r, r.enter(c), flags ?? new Set());
            break;
          case F.intermediate:
            intermediate = r.bool(c);
            break;
          case F.logType:
            logType = r.int32(c);
            break;
          case F.metadata:
            for (const m = r.enter(c); r.pos < m; ) {
              if (r.field(m) !== F.filterMetadata) {
                r.skip(m);
                continue;
              }
              const [name, value] = namespaceEntry(r, r.enter(m));
              if (name === AUTHZ_METADATA_NAMESPACE) authz = value ?? authz;
              else if (name === USAGE_METADATA_NAMESPACE) usage = value ?? usage;
            }
            break;
          default:
            r.skip(c);
        }
      }
    } else if (field === F.request) {
      for (const q = r.enter(end); r.pos < q; ) {
        if (r.field(q) === F.requestId) requestId = r.utf8(q);
        else r.skip(q);
      }
    } else if (field === F.response) {
      for (const p = r.enter(end); r.pos < p; ) {
        if (r.field(p) !== F.responseCode) {
          r.skip(p);
          continue;
        }
        status = 0; // a UInt32Value of 0 arrives empty
        for (const w = r.enter(p); r.pos < w; ) {
          if (r.field(w) === F.wrapped) status = r.uint32(w);
          else r.skip(w);
        }
      }
    } else r.skip(end);
  }
  if (!common) throw new UnreadableEntry("entry has no common_properties");
  const name = intermediate ? "DownstreamPeriodic" : (AccessLogType[logType] ?? String(logType));
  return {
    logType: name === "NotSet" ? "" : name,
    authz,
    usage,
    requestId,
    status,
    startMs,
    durationMs: duration ?? lastTxByte ?? 0,
    responseFlags: flags === undefined ? [] : FLAG_FIELDS.filter(([field]) => flags.has(field)).map(([, flag]) => flag),
    upstreamRequestSent,
  };
}

/** ResponseFlags into the set of field numbers that are set; a repeated message merges, a repeated bool's last wins. */
function readFlags(r: WireCursor, end: number, into: Set<number>): Set<number> {
  while (r.pos < end) {
    const field = r.field(end);
    if (field === UNAUTHORIZED_FIELD) {
      into.add(field);
      r.skip(end);
    } else if (FLAG_BY_FIELD.has(field)) {
      if (r.bool(end)) into.add(field);
      else into.delete(field);
    } else r.skip(end);
  }
  return into;
}

/** A Timestamp or Duration in milliseconds; nanoseconds rounded as protobuf-es's timestampMs does (or floored). */
function timeMs(r: WireCursor, end: number, round: (x: number) => number): number {
  let seconds = 0;
  let nanos = 0;
  while (r.pos < end) {
    const field = r.field(end);
    if (field === F.seconds) seconds = r.int64(end);
    else if (field === F.nanos) nanos = r.int32(end);
    else r.skip(end);
  }
  return seconds * 1000 + round(nanos / 1e6);
}

/** One filter_metadata map entry: its name, and its Struct when the name is one of ours (others are skipped). */
function namespaceEntry(r: WireCursor, end: number): [string, Record<string, unknown> | undefined] {
  let name = "";
  let start = -1;
  let stop = -1;
  while (r.pos < end) {
    const field = r.field(end);
    if (field === 1) name = r.utf8(end);
    else if (field === 2) {
      stop = r.payload(end);
      start = r.start;
    } else r.skip(end);
  }
  if (name !== AUTHZ_METADATA_NAMESPACE && name !== USAGE_METADATA_NAMESPACE) return [name, undefined];
  if (start < 0) return [name, {}];
  r.pos = start;
  const value = struct(r, stop);
  r.pos = end;
  return [name, value];
}

/** Struct keys decoded so far, by a hash of their bytes: the same few keys arrive in every entry. */
const structKeys = new Map<number, string>();
/** Keys are the sender's choice: the cache stops growing here (later keys are decoded each time). */
const MAX_STRUCT_KEYS = 512;
const MAX_STRUCT_KEY_BYTES = 48;

/** A Struct entry's key: a short ASCII key seen before comes from structKeys, checked byte for byte. */
function structKey(r: WireCursor, end: number): string {
  const stop = r.payload(end);
  const { buf, start } = r;
  const length = stop - start;
  if (length > MAX_STRUCT_KEY_BYTES) return buf.toString("utf8", start, stop);
  let hash = length;
  for (let i = start; i < stop; i++) hash = (Math.imul(hash, 31) + buf[i]!) | 0;
  const known = structKeys.get(hash);
  if (known !== undefined && known.length === length) {
    let same = true;
    for (let i = 0; i < length && same; i++) same = known.charCodeAt(i) === buf[start + i];
    if (same) return known;
  }
  const key = buf.toString("utf8", start, stop);
  // One UTF-16 unit per byte and no U+FFFD: ASCII, which the byte comparison above can match.
  if (known === undefined && structKeys.size < MAX_STRUCT_KEYS && key.length === length && !key.includes("\ufffd"))
    structKeys.set(hash, key);
  return key;
}

/** google.protobuf.Struct as the JSON object it stands for (protobuf-es's representation of a Struct field). */
function struct(r: WireCursor, end: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  while (r.pos < end) {
    if (r.field(end) !== F.structFields) {
      r.skip(end);
      continue;
    }
    const entry = r.enter(end);
    let key = "";
    let value: unknown = null;
    let seen = false;
    while (r.pos < entry) {
      const field = r.field(entry);
      if (field === 1) key = structKey(r, entry);
      else if (field === 2) {
        value = structValue(r, r.enter(entry));
        seen = true;
      } else r.skip(entry);
    }
    if (!seen) throw new UnreadableEntry(`metadata field "${key}" has no value`);
    // A key named __proto__ is data here, never the object's prototype.
    if (key === "__proto__")
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return out;
}

function structValue(r: WireCursor, end: number): unknown {
  let value: unknown;
  let set = false;
  while (r.pos < end) {
    const field = r.field(end);
    set = true;
    switch (field) {
      case F.nullValue:
        r.int32(end);
        value = null;
        break;
      case F.numberValue:
        value = r.double(end);
        break;
      case F.stringValue:
        value = r.utf8(end);
        break;
      case F.boolValue:
        value = r.bool(end);
        break;
      case F.structValue:
        value = struct(r, r.enter(end));
        break;
      case F.listValue: {
        const list: unknown[] = [];
        for (const l = r.enter(end); r.pos < l; ) {
          if (r.field(l) === F.listValues) list.push(structValue(r, r.enter(l)));
          else r.skip(l);
        }
        value = list;
        break;
      }
      default:
        set = false;
        r.skip(end);
    }
  }
  if (!set) throw new UnreadableEntry("a metadata value has no kind");
  return value;
}

function objectOrUndefined(value: unknown, field: string): Record<string, unknown> | undefined {
  // Envoy renders an absent namespace as null (JSON format) or "-" (text operators).
  if (value === undefined || value === null || value === "-" || value === "") return undefined;
  if (typeof value !== "object" || Array.isArray(value)) throw new UnreadableEntry(`${field} is not an object`);
  return value as Record<string, unknown>;
}

function integerField(value: unknown, field: string): number {
  if (value === undefined || value === null || value === "-") return 0;
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0)
    throw new UnreadableEntry(`${field} is not a non-negative integer`);
  return n;
}

/**
 * Lifts one line of Envoy's JSON file access log (envoy/envoy.yaml `json_format`): start_time, request_id,
 * response_code, duration_ms, authz (the ext_authz namespace), usage (the tollgate.usage namespace), log_type.
 */
export function recordFromFileLine(line: string): LogRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new UnreadableEntry("line is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new UnreadableEntry("line is not a JSON object");
  const o = parsed as Record<string, unknown>;
  const startTime = o[L.startTime];
  const logType = o[L.logType];
  const requestId = o[L.requestId];
  const flags = o[L.responseFlags];
  const sent = o[L.requestTxDurationMs];
  const start = typeof startTime === "string" ? Date.parse(startTime) : NaN;
  return {
    logType: typeof logType === "string" && logType !== "-" ? logType : "",
    authz: objectOrUndefined(o[L.authz], L.authz),
    usage: objectOrUndefined(o[L.usage], L.usage),
    requestId: typeof requestId === "string" && requestId !== "-" ? requestId : "",
    status: integerField(o[L.responseCode], L.responseCode),
    startMs: Number.isFinite(start) ? start : 0,
    durationMs: integerField(o[L.durationMs], L.durationMs),
    // %RESPONSE_FLAGS% prints "-" for none, else short flags joined by ",".
    responseFlags: typeof flags === "string" && flags !== "-" && flags !== "" ? flags.split(",") : [],
    // %REQUEST_TX_DURATION%: a number (or its text) once the last request byte went upstream; "-" or null before.
    upstreamRequestSent:
      sent !== undefined &&
      sent !== null &&
      sent !== "-" &&
      sent !== "" &&
      integerField(sent, L.requestTxDurationMs) >= 0,
  };
}
