// The victim tenant for test/security/authz-victim.isolated.test.ts, in a process of its own as Envoy is:
// `node --import tsx authz-victim-loop.ts ADDRESS REQUEST_FILE` sends the pre-encoded CheckRequest in REQUEST_FILE.
// Each stdin line "run MS GAP_MS" runs one open loop (as wrk2 measures: a Check is due every GAP_MS for MS, and each
// one's latency counts from when it was due, so time the server spent blocked counts) and prints one JSON line:
// the latencies in milliseconds, sorted, and the Checks that were not allowed. Closing stdin stops it.
import { readFileSync } from "node:fs";
import { type ClientHttp2Stream, connect, constants } from "node:http2";
import { performance } from "node:perf_hooks";
import { fromBinary } from "@bufbuild/protobuf";
import { CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";

const [address, file] = process.argv.slice(2);
if (!address || !file) throw new Error("usage: authz-victim-loop ADDRESS REQUEST_FILE");
const request = readFileSync(file);
// The gRPC message as it goes on the wire: uncompressed, 4-byte length, the bytes.
const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), request]);
framed.writeUInt32BE(request.length, 1);

// A bare HTTP/2 client (as Envoy's ext_authz client is a lean one): what it costs this process' CPU is not what the
// server is measured on, and a heavier client would take more of the machine the server runs on.
const session = connect(`http://${address}`);
// The session's failure reaches each Check as its stream's error or close.
session.on("error", () => {});

/** Envoy's ext_authz timeout: a Check unanswered by then is a failure, not a latency. */
const CHECK_TIMEOUT_MS = 1000;

/** One Check: its latency from `due`, or why it was not allowed. */
const check = (due: number) =>
  new Promise<{ ms: number; refused?: string }>((resolve) => {
    let settled = false;
    const settle = (refused?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(refused === undefined ? { ms: performance.now() - due } : { ms: performance.now() - due, refused });
    };
    let stream: ClientHttp2Stream | undefined;
    const timer = setTimeout(() => {
      settle(`no answer in ${CHECK_TIMEOUT_MS} ms`);
      stream?.close(constants.NGHTTP2_CANCEL);
    }, CHECK_TIMEOUT_MS);
    try {
      stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: "POST",
        [constants.HTTP2_HEADER_PATH]: "/envoy.service.auth.v3.Authorization/Check",
        "content-type": "application/grpc",
        te: "trailers",
      });
    } catch (error) {
      settle(`request: ${(error as Error).message}`);
      return;
    }
    const chunks: Buffer[] = [];
    const answering = stream;
    let grpcStatus: string | undefined;
    // A trailers-only answer (an error status) comes as the response headers.
    answering.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) grpcStatus = String(headers["grpc-status"]);
    });
    answering.on("trailers", (trailers) => {
      grpcStatus = String(trailers["grpc-status"]);
    });
    answering.on("data", (chunk: Buffer) => chunks.push(chunk));
    answering.on("error", (error: Error) => settle(`stream: ${error.message}`));
    answering.on("close", () => settle("stream closed without an answer"));
    answering.on("end", () => {
      if (grpcStatus !== "0") return settle(`grpc-status ${grpcStatus}`);
      const body = Buffer.concat(chunks);
      // One uncompressed gRPC message: a flag byte of 0, its 4-byte length, then exactly that many bytes.
      if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
        return settle(`malformed gRPC message (${body.length} bytes)`);
      }
      try {
        const code = fromBinary(CheckResponseSchema, body.subarray(5)).status?.code ?? 0;
        settle(code === 0 ? undefined : `status ${code}`);
      } catch (error) {
        settle(`CheckResponse: ${(error as Error).message}`);
      }
    });
    answering.end(framed);
  });

async function run(ms: number, gap: number) {
  const latencies: number[] = [];
  const refused: string[] = [];
  const start = performance.now();
  for (let i = 0; i * gap < ms; i++) {
    const due = start + i * gap;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const result = await check(Math.min(due, performance.now()));
    latencies.push(result.ms);
    if (result.refused && refused.length < 5) refused.push(result.refused);
  }
  return { latencies: latencies.sort((a, b) => a - b), refused };
}

let pending = "";
let queue = Promise.resolve();
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  pending += chunk;
  for (let at = pending.indexOf("\n"); at !== -1; at = pending.indexOf("\n")) {
    const [command, ms, gap] = pending.slice(0, at).trim().split(" ");
    pending = pending.slice(at + 1);
    if (command === "run")
      queue = queue.then(async () => {
        const result = await run(Number(ms), Number(gap)).catch((error: Error) => ({
          latencies: [],
          refused: [`victim loop: ${error.message}`],
        }));
        process.stdout.write(`${JSON.stringify(result)}\n`);
      });
  }
});
process.stdin.on("close", () => {
  session.close();
  process.exit(0);
});
process.stdout.write("ready\n");
