import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import type { HTTPAccessLogEntry } from "../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  AccessLogService,
  StreamAccessLogsMessageSchema,
  type StreamAccessLogsMessage,
} from "../gen/envoy/service/accesslog/v3/als_pb.js";
import { clientChannel, type ClientTlsFiles } from "../dataplane/grpc/client-credentials.js";
import { grpcDefinition } from "../dataplane/grpc/grpc-server.js";
import { ALS_FLUSH_INTERVAL_MS, ALS_LOG_NAME } from "./envoy-contract.js";

const AccessLogClient = grpc.makeGenericClientConstructor(grpcDefinition(AccessLogService), "AccessLogService");

/** Options for the edge's gRPC access-log sink; defaults follow envoy.local.yaml's http_grpc logger. */
export interface AlsClientOptions {
  /** The meter, "host:port". */
  address: string;
  /** Client certificate and trust for a meter serving mTLS (absent: plaintext). */
  tls?: ClientTlsFiles;
  node?: { id: string; cluster: string };
  logName?: string;
  flushIntervalMs?: number;
  /** Envoy's buffer_size_bytes default (16 KiB): a batch this large is sent without waiting for the timer. */
  bufferSizeBytes?: number;
  /** Entries held while the meter is unreachable; older ones are dropped past it (ALS is lossy by design). */
  maxPending?: number;
  /** Called when entries are dropped, so the edge can log it; never throws into the request path. */
  onDrop?: (count: number, reason: string) => void;
}

/** A lossy, batched StreamAccessLogs feed, as Envoy's http_grpc access logger: `log` never blocks a response. */
export interface AlsClient {
  log(entry: HTTPAccessLogEntry): void;
  /** Sends what is buffered now (tests use it instead of waiting for the timer). */
  flush(): void;
  /** Flushes, half-closes the stream and disconnects. */
  close(): Promise<void>;
}

type StreamCall = grpc.ClientWritableStream<StreamAccessLogsMessage>;

/** How long close() waits for the meter to answer the last stream. */
const CLOSE_WAIT_MS = 1_000;

/** Opens one long-lived client stream to the meter and batches entries onto it, reconnecting after a failure. */
export function createAlsClient(options: AlsClientOptions): AlsClient {
  const channel = clientChannel(options.tls);
  const client = new AccessLogClient(
    options.address,
    channel.credentials,
    channel.options,
  ) as unknown as grpc.Client & {
    streamAccessLogs(cb: (err: grpc.ServiceError | null) => void): StreamCall;
  };
  const node = options.node ?? { id: "tollgate-edge", cluster: "tollgate" };
  const logName = options.logName ?? ALS_LOG_NAME;
  const bufferSize = options.bufferSizeBytes ?? 16_384;
  const maxPending = options.maxPending ?? 10_000;
  let pending: HTTPAccessLogEntry[] = [];
  let pendingBytes = 0;
  let call: StreamCall | undefined;
  let closed = false;

  const timer = setInterval(() => flush(), options.flushIntervalMs ?? ALS_FLUSH_INTERVAL_MS);
  timer.unref();

  /** Each stream's end: the meter answers once it has taken every entry sent on it (or the stream failed). */
  const answered = new WeakMap<StreamCall, Promise<void>>();

  function open(): StreamCall {
    let settle!: () => void;
    const ended = new Promise<void>((resolve) => (settle = resolve));
    const stream = client.streamAccessLogs((err) => {
      settle();
      // The meter never answers until the stream ends; an answer or error means this stream is over.
      if (call === stream) call = undefined;
      if (err && !closed) options.onDrop?.(0, `access log stream ended: ${err.message}`);
    });
    stream.on("error", () => {
      settle();
      if (call === stream) call = undefined;
    });
    answered.set(stream, ended);
    call = stream;
    return stream;
  }

  function flush(): void {
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    pendingBytes = 0;
    let stream = call;
    // The identifier goes in the first message of each stream only, as Envoy sends it.
    const first = stream === undefined;
    if (!stream) stream = open();
    const message = create(StreamAccessLogsMessageSchema, {
      identifier: first ? { node, logName } : undefined,
      logEntries: { case: "httpLogs", value: { logEntry: batch } },
    });
    try {
      // write() returning false only means the buffer is full; grpc-js still queues it. Envoy likewise keeps
      // writing until its own buffer limit, so no entry waits on the meter here.
      stream.write(message);
    } catch (error) {
      call = undefined;
      options.onDrop?.(batch.length, `access log write failed: ${(error as Error).message}`);
    }
  }

  return {
    log(entry) {
      if (closed) return;
      pending.push(entry);
      pendingBytes += 512; // a rough per-entry size; only the flush trigger depends on it
      if (pending.length > maxPending) {
        const dropped = pending.length - maxPending;
        pending = pending.slice(dropped);
        options.onDrop?.(dropped, "access log buffer full");
      }
      if (pendingBytes >= bufferSize) flush();
    },
    flush,
    async close() {
      flush();
      closed = true;
      clearInterval(timer);
      const stream = call;
      call = undefined;
      if (stream) {
        stream.end();
        // Wait for the meter's answer (it has taken the last batch; over TLS the stream may still be connecting),
        // but never long on a dead peer: ALS is lossy by design and the file log keeps every entry.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          answered.get(stream),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS))),
        ]);
        clearTimeout(timer);
      }
      client.close();
    },
  };
}
