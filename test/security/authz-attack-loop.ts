// Attacker loops for test/security/authz-victim.isolated.test.ts and authz-gc.isolated.test.ts, run in a child
// process so the attackers' CPU is not the test's: `node --import tsx authz-attack-loop.ts ADDRESS REQUESTS_FILE LOOPS
// MAX_MS`. REQUESTS_FILE holds pre-encoded CheckRequests, each a 4-byte big-endian length then the bytes; loop i sends
// request i mod count, awaits the answer and sends the next request (round every one), until stdin closes or MAX_MS
// pass. Prints "running" once every loop has had its first answer, one JSON line of counts for each "count" line read
// from stdin, and one when it stops.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

const [address, file, loopsArg, maxMsArg] = process.argv.slice(2);
if (!address || !file) throw new Error("usage: authz-attack-loop ADDRESS REQUESTS_FILE LOOPS MAX_MS");
const loops = Number(loopsArg ?? 4);
const maxMs = Number(maxMsArg ?? 15_000);

const all = readFileSync(file);
const requests: Buffer[] = [];
for (let at = 0; at < all.length; ) {
  const length = all.readUInt32BE(at);
  requests.push(all.subarray(at + 4, at + 4 + length));
  at += 4 + length;
}

// Bytes in, bytes out: the requests were encoded once by the test, so sending one costs only the transport.
const identity = (b: Buffer) => b;
const Client = grpc.makeGenericClientConstructor(
  {
    check: {
      path: "/envoy.service.auth.v3.Authorization/Check",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  "Authorization",
);
const client = new Client(address, grpc.credentials.createInsecure(), {
  "grpc.max_send_message_length": 8 * 1024 * 1024,
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
}) as unknown as grpc.Client & { check(req: Buffer, cb: (err: grpc.ServiceError | null, res: Buffer) => void): void };

const counts = { answered: 0, failed: 0, perRequest: requests.map(() => 0), errors: [] as string[] };
let stopping = false;
// Each "count" line on stdin asks for the counts so far (one JSON line); closing stdin stops the loops.
let pendingInput = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  pendingInput += chunk;
  for (let at = pendingInput.indexOf("\n"); at !== -1; at = pendingInput.indexOf("\n")) {
    if (pendingInput.slice(0, at).trim() === "count") process.stdout.write(`${JSON.stringify(counts)}\n`);
    pendingInput = pendingInput.slice(at + 1);
  }
});
process.stdin.on("close", () => (stopping = true));
const deadline = setTimeout(() => (stopping = true), maxMs);

const send = (request: Buffer) =>
  new Promise<void>((resolve) => {
    client.check(request, (error) => {
      if (error) {
        counts.failed++;
        if (counts.errors.length < 5) counts.errors.push(error.message);
      } else counts.answered++;
      resolve();
    });
  });

let started = 0;
const started$ = new Promise<void>((resolve) => {
  for (let i = 0; i < loops; i++) {
    void (async () => {
      await send(requests[i % requests.length]!);
      if (++started === loops) resolve();
      // Each loop goes round every request, starting from its own.
      for (let n = i + 1; !stopping; n++) {
        const index = n % requests.length;
        await send(requests[index]!);
        counts.perRequest[index]!++;
      }
      if (--started === 0) finish();
    })();
  }
});
await started$;
process.stdout.write("running\n");

function finish(): void {
  clearTimeout(deadline);
  process.stdout.write(`${JSON.stringify(counts)}\n`);
  client.close();
  process.exit(0);
}
