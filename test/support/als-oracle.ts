import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AccessLogType, type HTTPAccessLogEntry } from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import type { LogRecord } from "../../src/domain/metering.js";
import { AUTHZ_METADATA_NAMESPACE, USAGE_METADATA_NAMESPACE } from "../../src/contract/index.js";
import { RESPONSE_FLAG_NAMES, UnreadableEntry } from "../../src/dataplane/accesslog/log-record.js";

/**
 * The reference lifter: a LogRecord read from protobuf-es's full decode of an ALS entry. Production lifts straight
 * from the entry's wire bytes (recordFromHttpEntry); tests require both to agree.
 */
export function recordFromDecodedEntry(entry: HTTPAccessLogEntry): LogRecord {
  const common = entry.commonProperties;
  if (!common) throw new UnreadableEntry("entry has no common_properties");
  const metadata = common.metadata?.filterMetadata ?? {};
  const logType = common.intermediateLogEntry
    ? "DownstreamPeriodic"
    : (AccessLogType[common.accessLogType] ?? String(common.accessLogType));
  const duration = common.duration ?? common.timeToLastDownstreamTxByte;
  return {
    logType: logType === "NotSet" ? "" : logType,
    authz: metadata[AUTHZ_METADATA_NAMESPACE] as Record<string, unknown> | undefined,
    usage: metadata[USAGE_METADATA_NAMESPACE] as Record<string, unknown> | undefined,
    requestId: entry.request?.requestId ?? "",
    status: entry.response?.responseCode ?? 0,
    startMs: common.startTime ? timestampMs(common.startTime) : 0,
    durationMs: duration ? Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6) : 0,
    responseFlags: RESPONSE_FLAG_NAMES.filter(([name]) => {
      const value = common.responseFlags?.[name];
      return value !== undefined && value !== false;
    }).map(([, flag]) => flag),
    upstreamRequestSent: common.timeToLastUpstreamTxByte !== undefined,
  };
}
