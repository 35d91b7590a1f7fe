// The transport floor for test/security/authz-victim.isolated.test.ts, in a process of its own as authz is: a gRPC
// server that lifts each CheckRequest as authz does (HTTP/2, grpc-js, the same decoder) and answers OK without
// deciding. `node --import tsx authz-transport-floor.ts` prints its port, then serves until stdin closes.
import { create } from "@bufbuild/protobuf";
import { liftCheckRequest } from "../../src/dataplane/authz/check-request.js";
import { startGrpcServer } from "../../src/dataplane/grpc/grpc-server.js";
import { Authorization, CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";

const OK = create(CheckResponseSchema, { status: { code: 0 }, httpResponse: { case: "okResponse", value: {} } });
const server = await startGrpcServer("127.0.0.1:0", [
  {
    service: Authorization,
    implementation: { check: (_call: unknown, answer: (e: null, r: unknown) => void) => answer(null, OK) },
    decoders: { check: liftCheckRequest },
  },
]);
process.stdout.write(`${server.port}\n`);
process.stdin.resume();
process.stdin.on("close", () => void server.close().then(() => process.exit(0)));
