import * as grpc from "@grpc/grpc-js";
import { create, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  AccessLogService,
  StreamAccessLogsMessageSchema,
  type StreamAccessLogsMessage,
} from "../../src/gen/envoy/service/accesslog/v3/als_pb.js";
import { grpcDefinition } from "../../src/dataplane/grpc/grpc-server.js";
import { createDecisionSigner } from "../../src/dataplane/signing/decision-signature.js";

/** The signing secret test planes and processes share (TOLLGATE_SIGNING_SECRET), so the entries built here verify. */
export const TEST_SIGNING_SECRET = "test-signing-secret-0123456789abcdef";
const testSigner = createDecisionSigner(TEST_SIGNING_SECRET);

const AlsClient = grpc.makeGenericClientConstructor(grpcDefinition(AccessLogService), "AccessLogService");

/** What a test says about one request; the rest is filled in the way authz and the usage filter would. */
export interface EntryShape {
  decisionId?: string;
  accountId: string;
  keyId?: string;
  prices?: { input: bigint; cachedInput: bigint; output: bigint };
  reservedNanos?: bigint;
  usage?: {
    prompt: number;
    completion: number;
    cached?: number;
    reasoning?: number;
    source?: "provider" | "estimate";
    complete?: boolean;
  } | null;
  status?: number;
  startMs?: number;
  requestId?: string;
  logType?: AccessLogType;
}

/** The ext_authz namespace exactly as admissionMetadata writes it, signed with TEST_SIGNING_SECRET. */
export function authzMetadata(shape: EntryShape): JsonObject {
  const metadata = unsignedAuthzMetadata(shape);
  return { ...metadata, sig: testSigner.signMetadata(metadata)! };
}

/** The ext_authz namespace without its signature (what a forger without the secret can write). */
export function unsignedAuthzMetadata(shape: EntryShape): JsonObject {
  const prices = shape.prices ?? { input: 2_500_000n, cachedInput: 1_250_000n, output: 10_000_000n };
  return {
    decision_id: shape.decisionId ?? "",
    account_id: shape.accountId,
    key_id: shape.keyId ?? "key_test",
    model: "gpt-4o",
    upstream_model: "gpt-4o-2024-08-06",
    provider: "openai",
    price_input: prices.input.toString(),
    price_cached_input: prices.cachedInput.toString(),
    price_output: prices.output.toString(),
    reserved_tokens: 1000,
    reserved_nanos: (shape.reservedNanos ?? 10_000_000n).toString(),
    prompt_tokens_estimate: 100,
    max_output_tokens: 900,
    stream: false,
  };
}

/** The tollgate.usage namespace as the usage filter writes it. */
export function usageMetadata(u: NonNullable<EntryShape["usage"]>): JsonObject {
  return {
    prompt_tokens: u.prompt,
    completion_tokens: u.completion,
    cached_tokens: u.cached ?? 0,
    reasoning_tokens: u.reasoning ?? 0,
    source: u.source ?? "provider",
    complete: u.complete ?? true,
  };
}

/** An HTTPAccessLogEntry the way Envoy's http_grpc access logger builds it (DownstreamEnd, both namespaces). */
export function alsEntry(shape: EntryShape): HTTPAccessLogEntry {
  const filterMetadata: Record<string, JsonObject> = {
    "envoy.filters.http.ext_authz": shape.decisionId ? authzMetadata(shape) : { verdict: "insufficient_credits" },
  };
  if (shape.usage) filterMetadata["tollgate.usage"] = usageMetadata(shape.usage);
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      accessLogType: shape.logType ?? AccessLogType.DownstreamEnd,
      startTime: timestampFromMs(shape.startMs ?? Date.UTC(2025, 0, 15, 12)),
      duration: { seconds: 1n, nanos: 250_000_000 },
      metadata: { filterMetadata },
    },
    request: { requestId: shape.requestId ?? `req-${shape.decisionId ?? "denied"}`, path: "/v1/chat/completions" },
    response: { responseCode: shape.status ?? 200 },
  });
}

/** One JSON file-log line (envoy.yaml json_format) for the same request. */
export function fileLogLine(shape: EntryShape): string {
  return JSON.stringify({
    start_time: new Date(shape.startMs ?? Date.UTC(2025, 0, 15, 12)).toISOString(),
    request_id: shape.requestId ?? `req-${shape.decisionId ?? "denied"}`,
    response_code: shape.status ?? 200,
    duration_ms: 1250,
    response_flags: "-",
    request_tx_duration_ms: null,
    authz: shape.decisionId ? authzMetadata(shape) : { verdict: "insufficient_credits" },
    usage: shape.usage ? usageMetadata(shape.usage) : null,
    upstream_host: "10.0.0.1:443",
    log_type: "DownstreamEnd",
  });
}

/** One open StreamAccessLogs stream, as one Envoy worker holds it. */
export interface AlsStream {
  /** Sends a batch; the identifier goes with the first batch only, as Envoy does. */
  send(entries: HTTPAccessLogEntry[]): void;
  /** Sends a batch already encoded by `encodeBatch` (a load generator encodes before its clock starts, as Envoy's cost is not ours). */
  sendEncoded(message: Uint8Array): void;
  /** Half-closes and waits for the server's answer. */
  end(): Promise<void>;
  /** Drops the stream without ending it (a reconnecting or dying Envoy). */
  cancel(): void;
}

/** A StreamAccessLogsMessage of entries without the identifier (a stream's later messages), encoded. */
export function encodeBatch(entries: HTTPAccessLogEntry[]): Uint8Array {
  return toBinary(
    StreamAccessLogsMessageSchema,
    create(StreamAccessLogsMessageSchema, { logEntries: { case: "httpLogs", value: { logEntry: entries } } }),
  );
}

/** A real gRPC client for envoy.service.accesslog.v3.AccessLogService. */
export function connectAls(address: string): { open(): AlsStream; ready(): Promise<void>; close(): void } {
  const client = new AlsClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    streamAccessLogs(cb: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<StreamAccessLogsMessage>;
  };
  return {
    open() {
      let first = true;
      let settle!: (err: grpc.ServiceError | null) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      // A dropped stream is normal (the meter died, Envoy reconnects); only end() reports how it finished.
      done.catch(() => {});
      const call = client.streamAccessLogs((err) => settle(err));
      call.on("error", () => {});
      return {
        send(entries) {
          call.write(
            create(StreamAccessLogsMessageSchema, {
              identifier: first ? { node: { id: "envoy-test", cluster: "tollgate" }, logName: "tollgate" } : undefined,
              logEntries: { case: "httpLogs", value: { logEntry: entries } },
            }),
          );
          first = false;
        },
        sendEncoded(message) {
          if (first) throw new Error("the first message of a stream carries the identifier: send() it first");
          // grpcDefinition's serializer passes bytes through unchanged.
          call.write(message as unknown as StreamAccessLogsMessage);
        },
        end() {
          call.end();
          return done;
        },
        cancel() {
          done.catch(() => {});
          call.cancel();
        },
      };
    },
    ready: () =>
      new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
      ),
    close: () => client.close(),
  };
}
