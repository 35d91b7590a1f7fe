import type * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toJsonString } from "@bufbuild/protobuf";
import { HTTPAccessLogEntrySchema } from "../../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  AccessLogService,
  StreamAccessLogsMessage_HTTPAccessLogEntriesSchema,
  StreamAccessLogsMessage_IdentifierSchema,
  StreamAccessLogsMessageSchema,
  StreamAccessLogsResponseSchema,
  type StreamAccessLogsResponse,
} from "../../gen/envoy/service/accesslog/v3/als_pb.js";
import type { Logger } from "../../logging.js";
import { WireCursor } from "../wire/index.js";
import { recordFromHttpEntry } from "./log-record.js";
import type { Meter, MeterInput } from "./meter.js";

/** One ALS entry as meter input; the dead-letter payload is the entry's proto JSON, rendered only when needed. */
export function alsInput(entry: Uint8Array): MeterInput {
  return {
    source: "als",
    lift: () => recordFromHttpEntry(entry),
    payload: () => {
      try {
        return toJsonString(HTTPAccessLogEntrySchema, fromBinary(HTTPAccessLogEntrySchema, entry));
      } catch {
        // Not decodable, or proto JSON cannot render it (NaN in a Struct): keep the exact entry as base64 protobuf.
        return JSON.stringify({
          protobuf_base64: Buffer.from(entry.buffer, entry.byteOffset, entry.byteLength).toString("base64"),
        });
      }
    },
  };
}

/** A StreamAccessLogsMessage as the meter takes it: the log name when identified, and each HTTP entry's bytes. */
export interface AlsMessage {
  logName: string | undefined;
  httpEntries: Uint8Array[];
}

const IDENTIFIER = StreamAccessLogsMessageSchema.field.identifier!.number;
const HTTP_LOGS = StreamAccessLogsMessageSchema.field.httpLogs!.number;
const TCP_LOGS = StreamAccessLogsMessageSchema.field.tcpLogs!.number;
const LOG_NAME = StreamAccessLogsMessage_IdentifierSchema.field.logName!.number;
const LOG_ENTRY = StreamAccessLogsMessage_HTTPAccessLogEntriesSchema.field.logEntry!.number;

/**
 * Splits a StreamAccessLogsMessage into its entries' bytes without decoding them: each entry is read by
 * `recordFromHttpEntry`, which skips what billing does not need, and one unreadable entry is dead-lettered alone
 * instead of failing the whole batch. TCP entries (the `log_entries` oneof's other case) are ignored.
 */
export function splitAlsMessage(bytes: Buffer): AlsMessage {
  const r = new WireCursor(bytes, "StreamAccessLogsMessage");
  const message: AlsMessage = { logName: undefined, httpEntries: [] };
  while (r.pos < bytes.length) {
    switch (r.field(bytes.length)) {
      case IDENTIFIER:
        for (const end = r.enter(bytes.length); r.pos < end; ) {
          if (r.field(end) === LOG_NAME) message.logName = r.utf8(end);
          else r.skip(end);
        }
        message.logName ??= "";
        break;
      case HTTP_LOGS:
        for (const end = r.enter(bytes.length); r.pos < end; ) {
          if (r.field(end) === LOG_ENTRY) message.httpEntries.push(r.bytes(end));
          else r.skip(end);
        }
        break;
      case TCP_LOGS:
        // The oneof's last case wins: TCP entries replace any HTTP ones, and the meter bills neither.
        r.skip(bytes.length);
        message.httpEntries = [];
        break;
      default:
        r.skip(bytes.length);
    }
  }
  return message;
}

/**
 * envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs for `startGrpcServer`, messages split by
 * `splitAlsMessage` (bytes that are not a message fail the stream; Envoy reconnects). Envoy opens a long-lived client stream,
 * sends its identifier in the first message only, then batches of entries; it never waits for an answer (ALS is
 * lossy), so every batch is handed to the meter at once and the stream is answered when the client ends it.
 */
export function accessLogService(options: { meter: Meter; logger: Logger }) {
  const { meter, logger } = options;
  const implementation: grpc.UntypedServiceImplementation = {
    streamAccessLogs(
      call: grpc.ServerReadableStream<AlsMessage, StreamAccessLogsResponse>,
      callback: grpc.sendUnaryData<StreamAccessLogsResponse>,
    ) {
      let logName: string | undefined;
      const pending = new Set<Promise<unknown>>();
      call.on("data", (message: AlsMessage) => {
        if (message.logName !== undefined && logName === undefined) logName = message.logName;
        const inputs = message.httpEntries.map(alsInput);
        if (inputs.length === 0) return;
        const p = meter
          .submit(inputs)
          .catch((error: unknown) => logger.error({ err: error, logName }, "access log batch not committed"));
        pending.add(p);
        void p.finally(() => pending.delete(p));
      });
      call.on("error", (error) => logger.debug({ err: error, logName }, "access log stream ended with an error"));
      call.on("end", () => {
        void Promise.allSettled([...pending]).then(() => callback(null, create(StreamAccessLogsResponseSchema)));
      });
    },
  };
  return { service: AccessLogService, implementation, decoders: { streamAccessLogs: splitAlsMessage } };
}
