import type * as grpc from "@grpc/grpc-js";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { HTTPAccessLogEntrySchema, type HTTPAccessLogEntry } from "../../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  StreamAccessLogsResponseSchema,
  type StreamAccessLogsMessage,
  type StreamAccessLogsResponse,
} from "../../gen/envoy/service/accesslog/v3/als_pb.js";
import type { Logger } from "../../logging.js";
import { recordFromHttpEntry } from "./log-record.js";
import type { Meter, MeterInput } from "./meter.js";

/** One ALS entry as meter input; the dead-letter payload is the entry's proto JSON, rendered only when needed. */
export function alsInput(entry: HTTPAccessLogEntry): MeterInput {
  return {
    source: "als",
    lift: () => recordFromHttpEntry(entry),
    payload: () => {
      try {
        return toJsonString(HTTPAccessLogEntrySchema, entry);
      } catch {
        // Proto JSON has no NaN or Infinity in a Struct value: keep the exact entry as base64 protobuf instead.
        return JSON.stringify({ protobuf_base64: Buffer.from(toBinary(HTTPAccessLogEntrySchema, entry)).toString("base64") });
      }
    },
  };
}

/**
 * Implements envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs. Envoy opens a long-lived client stream,
 * sends its identifier in the first message only, then batches of entries; it never waits for an answer (ALS is
 * lossy), so every batch is handed to the meter at once and the stream is answered when the client ends it.
 */
export function accessLogImplementation(options: { meter: Meter; logger: Logger }): grpc.UntypedServiceImplementation {
  const { meter, logger } = options;
  return {
    streamAccessLogs(
      call: grpc.ServerReadableStream<StreamAccessLogsMessage, StreamAccessLogsResponse>,
      callback: grpc.sendUnaryData<StreamAccessLogsResponse>,
    ) {
      let logName: string | undefined;
      const pending = new Set<Promise<unknown>>();
      call.on("data", (message: StreamAccessLogsMessage) => {
        if (message.identifier && logName === undefined) logName = message.identifier.logName;
        if (message.logEntries.case !== "httpLogs") return;
        const inputs = message.logEntries.value.logEntry.map(alsInput);
        if (inputs.length === 0) return;
        const p = meter.submit(inputs).catch((error: unknown) => logger.error({ err: error, logName }, "access log batch not committed"));
        pending.add(p);
        void p.finally(() => pending.delete(p));
      });
      call.on("error", (error) => logger.debug({ err: error, logName }, "access log stream ended with an error"));
      call.on("end", () => {
        void Promise.allSettled([...pending]).then(() => callback(null, create(StreamAccessLogsResponseSchema)));
      });
    },
  };
}
