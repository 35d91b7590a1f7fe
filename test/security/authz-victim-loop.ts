// The victim tenant for test/security/authz-victim.isolated.test.ts, in a process of its own as Envoy is:
// `node --import tsx authz-victim-loop.ts ADDRESS REQUEST_FILE` sends the pre-encoded CheckRequest in REQUEST_FILE.
// Each stdin line "run MS GAP_MS" runs one open loop (as wrk2 measures: a Check is due every GAP_MS for MS, and each
// one's latency counts from when it was due, so time the server spent blocked counts) and prints one JSON line:
// the latencies in milliseconds, sorted, and the Checks that were not allowed. Closing stdin stops it.
import { readFileSync } from "node:fs";
import { connect, constants } from "node:http2";
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
session.on("error", () => {});

/** One Check: its latency from `due`, or why it was not allowed. */
const check = (due: number) =>
  new Promise<{ ms: number; refused?: string }>((resolve) => {
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: "POST",
      [constants.HTTP2_HEADER_PATH]: "/envoy.service.auth.v3.Authorization/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    stream.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) grpcStatus = String(headers["grpc-status"]);
    });
    stream.on("trailers", (trailers) => {
      grpcStatus = String(trailers["grpc-status"]);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (error: Error) => resolve({ ms: performance.now() - due, refused: error.message }));
    stream.on("end", () => {
      const ms = performance.now() - due;
      if (grpcStatus !== "0") return resolve({ ms, refused: `grpc-status ${grpcStatus}` });
      const body = Buffer.concat(chunks);
      const code = fromBinary(CheckResponseSchema, body.subarray(5)).status?.code ?? 0;
      resolve(code === 0 ? { ms } : { ms, refused: `status ${code}` });
    });
    stream.end(framed);
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
        process.stdout.write(`${JSON.stringify(await run(Number(ms), Number(gap)))}\n`);
      });
  }
});
process.stdin.on("close", () => {
  session.close();
  process.exit(0);
});
process.stdout.write("ready\n");
