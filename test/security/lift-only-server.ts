// A gRPC server that lifts each CheckRequest as authz does (HTTP/2, grpc-js, the same decoder) and answers OK without
// deciding: the transport floor of the victim suite, and the server of the garbage-collection suite.
import { create } from "@bufbuild/protobuf";
import { liftCheckRequest } from "../../src/dataplane/authz/check-request.js";
import { startGrpcServer } from "../../src/dataplane/grpc/grpc-server.js";
import { Authorization, CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";

const OK = create(CheckResponseSchema, { status: { code: 0 }, httpResponse: { case: "okResponse", value: {} } });

/** Starts it on a free port of 127.0.0.1. */
export function startLiftOnlyServer() {
  return startGrpcServer("127.0.0.1:0", [
    {
      service: Authorization,
      implementation: { check: (_call: unknown, answer: (e: null, r: unknown) => void) => answer(null, OK) },
      decoders: { check: liftCheckRequest },
    },
  ]);
}
