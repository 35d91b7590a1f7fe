// Target (a) of bench/check: the floor. A grpc-js server for envoy.service.auth.v3.Authorization/Check built exactly
// like tollgate's (protobuf-es codecs through grpcDefinition + startGrpcServer), whose handler does nothing but answer
// a fixed OK. The deserializer still decodes every request with fromBinary, so the gap to tollgate is the decision.
//
//   node bench/null-check-server.mjs 127.0.0.1:PORT     (prints "listening PORT" once bound)
import { create } from "@bufbuild/protobuf";
import { startGrpcServer } from "../dist/dataplane/grpc/grpc-server.js";
import { Authorization, CheckResponseSchema } from "../dist/gen/envoy/service/auth/v3/external_auth_pb.js";

const address = process.argv[2] ?? "127.0.0.1:0";
const OK = create(CheckResponseSchema, { status: { code: 0 }, httpResponse: { case: "okResponse", value: {} } });

const server = await startGrpcServer(address, [
  {
    service: Authorization,
    implementation: {
      check(call, callback) {
        // Touch the decoded request so the decode cannot be optimised away.
        if (call.request.attributes === undefined) callback(null, OK);
        else callback(null, OK);
      },
    },
  },
]);
process.stdout.write(`listening ${server.port}\n`);
const stop = () => server.close(1000).then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
