import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AccessLogType, type HTTPAccessLogEntry } from "../../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { AUTHZ_NAMESPACE, USAGE_NAMESPACE, type LogRecord } from "../../domain/metering.js";

/** A line or entry that cannot even be lifted into a LogRecord; the reason goes to the dead-letter table. */
export class UnreadableEntry extends Error {
  override name = "UnreadableEntry";
}

/**
 * Lifts a gRPC ALS entry: common_properties.access_log_type (or the older intermediate_log_entry flag), the two
 * dynamic-metadata namespaces from common_properties.metadata.filter_metadata, status, start and duration.
 */
export function recordFromHttpEntry(entry: HTTPAccessLogEntry): LogRecord {
  const common = entry.commonProperties;
  if (!common) throw new UnreadableEntry("entry has no common_properties");
  const metadata = common.metadata?.filterMetadata ?? {};
  const logType = common.intermediateLogEntry ? "DownstreamPeriodic" : (AccessLogType[common.accessLogType] ?? String(common.accessLogType));
  const duration = common.duration ?? common.timeToLastDownstreamTxByte;
  return {
    logType: logType === "NotSet" ? "" : logType,
    authz: metadata[AUTHZ_NAMESPACE] as Record<string, unknown> | undefined,
    usage: metadata[USAGE_NAMESPACE] as Record<string, unknown> | undefined,
    requestId: entry.request?.requestId ?? "",
    status: entry.response?.responseCode ?? 0,
    startMs: common.startTime ? timestampMs(common.startTime) : 0,
    durationMs: duration ? Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6) : 0,
  };
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
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw new UnreadableEntry(`${field} is not a non-negative integer`);
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
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UnreadableEntry("line is not a JSON object");
  const o = parsed as Record<string, unknown>;
  const start = typeof o.start_time === "string" ? Date.parse(o.start_time) : NaN;
  return {
    logType: typeof o.log_type === "string" && o.log_type !== "-" ? o.log_type : "",
    authz: objectOrUndefined(o.authz, "authz"),
    usage: objectOrUndefined(o.usage, "usage"),
    requestId: typeof o.request_id === "string" && o.request_id !== "-" ? o.request_id : "",
    status: integerField(o.response_code, "response_code"),
    startMs: Number.isFinite(start) ? start : 0,
    durationMs: integerField(o.duration_ms, "duration_ms"),
  };
}
