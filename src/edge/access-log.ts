import { create, type JsonObject } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RequestMethod } from "../gen/envoy/config/core/v3/base_pb.js";
import {
  AccessLogType,
  HTTPAccessLogEntry_HTTPVersion,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  AUTHZ_METADATA_NAMESPACE,
  FILE_LOG_KEYS as L,
  USAGE_METADATA_NAMESPACE,
  type FileLogKey,
} from "../contract/index.js";
import type { UsageMetadata } from "../dataplane/usage/extract.js";
import { FILE_LOG_FORMAT } from "./envoy-contract.js";

/** Envoy's short response flags the edge can produce (what %RESPONSE_FLAGS% prints). */
export type ResponseFlag = "UAEX" | "UF" | "UR" | "DC" | "NR" | "SI";

/** One finished downstream exchange: everything both access logs are rendered from, so they cannot disagree. */
export interface ExchangeRecord {
  startMs: number;
  /** Start to last byte sent downstream (or to the end of the exchange when it was cut). */
  durationMs: number;
  requestId: string;
  method: string;
  /** The client's path, before authz rewrote it. */
  originalPath: string;
  /** The path sent upstream (authz's rewrite), or the original one when nothing went upstream. */
  path: string;
  authority: string;
  scheme: string;
  userAgent: string;
  forwardedFor: string;
  remote: { address: string; port: number };
  local: { address: string; port: number };
  requestBodyBytes: number;
  /** 0 when no response started (Envoy logs 0 too). */
  responseCode: number;
  responseBodyBytes: number;
  responseFlags: ResponseFlag[];
  authz?: JsonObject;
  usage?: UsageMetadata;
  /** Start to the last request byte handed to the provider's connection; absent when the request never went whole. */
  upstreamRequestSentMs?: number;
  /** "host:port" of the provider the request went to. */
  upstreamHost?: string;
  upstreamCluster?: string;
  routeName?: string;
}

const METHODS: Record<string, RequestMethod> = {
  GET: RequestMethod.GET,
  HEAD: RequestMethod.HEAD,
  POST: RequestMethod.POST,
  PUT: RequestMethod.PUT,
  DELETE: RequestMethod.DELETE,
  CONNECT: RequestMethod.CONNECT,
  OPTIONS: RequestMethod.OPTIONS,
  TRACE: RequestMethod.TRACE,
  PATCH: RequestMethod.PATCH,
};

function socket(a: { address: string; port: number }) {
  return {
    address: {
      case: "socketAddress" as const,
      value: { address: a.address, portSpecifier: { case: "portValue" as const, value: a.port } },
    },
  };
}

function upstreamAddress(hostPort: string | undefined) {
  if (!hostPort) return undefined;
  const at = hostPort.lastIndexOf(":");
  return socket({ address: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)) });
}

/** The filter_metadata Envoy attaches to the entry: only the namespaces that were written. */
function filterMetadata(record: ExchangeRecord): Record<string, JsonObject> {
  const out: Record<string, JsonObject> = {};
  if (record.authz && Object.keys(record.authz).length > 0) out[AUTHZ_METADATA_NAMESPACE] = record.authz;
  if (record.usage) out[USAGE_METADATA_NAMESPACE] = { ...record.usage };
  return out;
}

/** Renders the gRPC ALS entry Envoy's http_grpc logger would send for this exchange (the meter's billing input). */
export function toHttpAccessLogEntry(record: ExchangeRecord): HTTPAccessLogEntry {
  // Duration.nanos is an int32: a fractional millisecond would make the whole message unserialisable.
  const durationMs = Math.round(record.durationMs);
  const flags = new Set(record.responseFlags);
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      sampleRate: 1,
      downstreamRemoteAddress: { address: socket(record.remote).address },
      downstreamLocalAddress: { address: socket(record.local).address },
      startTime: timestampFromMs(record.startMs),
      timeToLastDownstreamTxByte: durationFromMs(durationMs),
      duration: durationFromMs(durationMs),
      timeToLastUpstreamTxByte:
        record.upstreamRequestSentMs === undefined
          ? undefined
          : durationFromMs(Math.round(record.upstreamRequestSentMs)),
      upstreamRemoteAddress: record.upstreamHost
        ? { address: upstreamAddress(record.upstreamHost)!.address }
        : undefined,
      upstreamCluster: record.upstreamCluster ?? "",
      routeName: record.routeName ?? "",
      responseFlags: {
        upstreamConnectionFailure: flags.has("UF"),
        upstreamRemoteReset: flags.has("UR"),
        downstreamConnectionTermination: flags.has("DC"),
        noRouteFound: flags.has("NR"),
        streamIdleTimeout: flags.has("SI"),
        unauthorizedDetails: flags.has("UAEX") ? { reason: 1 } : undefined,
      },
      metadata: { filterMetadata: filterMetadata(record) },
      accessLogType: AccessLogType.DownstreamEnd,
    },
    protocolVersion: HTTPAccessLogEntry_HTTPVersion.HTTP11,
    request: {
      requestMethod: METHODS[record.method] ?? RequestMethod.METHOD_UNSPECIFIED,
      scheme: record.scheme,
      authority: record.authority,
      path: record.path,
      originalPath: record.originalPath !== record.path ? record.originalPath : "",
      userAgent: record.userAgent,
      forwardedFor: record.forwardedFor,
      requestId: record.requestId,
      requestBodyBytes: BigInt(record.requestBodyBytes),
    },
    response: {
      responseCode: record.responseCode,
      responseBodyBytes: BigInt(record.responseBodyBytes),
    },
  });
}

/**
 * Renders the JSON file-log line with exactly envoy.yaml's json_format keys, in its order. Values keep their JSON
 * types as Envoy's typed formatter does (numbers stay numbers, a metadata namespace is an object, absent is null).
 */
export function toFileLogLine(record: ExchangeRecord): string {
  const values: Record<FileLogKey, unknown> = {
    [L.startTime]: new Date(record.startMs).toISOString(),
    [L.requestId]: record.requestId,
    [L.responseCode]: record.responseCode,
    [L.durationMs]: Math.round(record.durationMs),
    [L.responseFlags]: record.responseFlags.length > 0 ? record.responseFlags.join(",") : "-",
    [L.requestTxDurationMs]:
      record.upstreamRequestSentMs === undefined ? null : Math.round(record.upstreamRequestSentMs),
    [L.authz]: record.authz && Object.keys(record.authz).length > 0 ? record.authz : null,
    [L.usage]: record.usage ?? null,
    [L.upstreamHost]: record.upstreamHost ?? null,
    [L.logType]: "DownstreamEnd",
  };
  const line: Record<string, unknown> = {};
  for (const key of Object.keys(FILE_LOG_FORMAT) as FileLogKey[]) line[key] = values[key];
  return JSON.stringify(line);
}
