import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  AccessLogService,
  StreamAccessLogsResponseSchema,
  type StreamAccessLogsMessage,
} from "../../src/gen/envoy/service/accesslog/v3/als_pb.js";
import type { HTTPAccessLogEntry } from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../src/dataplane/grpc/grpc-server.js";

/** A StreamAccessLogs sink that records every message the data plane sends, for tests of the ALS client. */
export interface RecordingMeter {
  server: RunningGrpcServer;
  /** Every message received, per stream, in order. */
  streams: StreamAccessLogsMessage[][];
  /** All HTTP entries received so far. */
  entries(): HTTPAccessLogEntry[];
  close(): Promise<void>;
}

/** Starts a recording AccessLogService on `address` (health service included, as Envoy's cluster health-checks it). */
export async function startRecordingMeter(address = "127.0.0.1:0"): Promise<RecordingMeter> {
  const streams: StreamAccessLogsMessage[][] = [];
  const server = await startGrpcServer(address, [
    {
      service: AccessLogService,
      implementation: {
        streamAccessLogs(
          call: grpc.ServerReadableStream<StreamAccessLogsMessage, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) {
          const messages: StreamAccessLogsMessage[] = [];
          streams.push(messages);
          call.on("data", (m: StreamAccessLogsMessage) => messages.push(m));
          call.on("end", () => callback(null, create(StreamAccessLogsResponseSchema)));
          call.on("error", () => {});
        },
      },
    },
  ]);
  return {
    server,
    streams,
    entries: () => streams.flat().flatMap((m) => (m.logEntries.case === "httpLogs" ? m.logEntries.value.logEntry : [])),
    close: () => server.close(500),
  };
}
