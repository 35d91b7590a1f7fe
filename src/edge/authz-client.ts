import * as grpc from "@grpc/grpc-js";
import { Authorization, type CheckRequest, type CheckResponse } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { clientChannel, type ClientTlsFiles } from "../dataplane/grpc/client-credentials.js";
import { grpcDefinition } from "../dataplane/grpc/grpc-server.js";
import { AUTHZ_TIMEOUT_MS } from "./envoy-contract.js";

const AuthorizationClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");

/** The edge's ext_authz call: one Check per request, failing (never allowing) on any gRPC error or timeout. */
export interface EdgeAuthzClient {
  check(request: CheckRequest): Promise<CheckResponse>;
  close(): void;
}

/** Connects to authz at "host:port" with Envoy's per-check deadline; over mTLS when `tls` is given. */
export function createEdgeAuthzClient(
  address: string,
  timeoutMs = AUTHZ_TIMEOUT_MS,
  tls?: ClientTlsFiles,
): EdgeAuthzClient {
  const channel = clientChannel(tls);
  const client = new AuthorizationClient(address, channel.credentials, {
    ...channel.options,
    // Bodies up to 1 MiB travel inside the CheckRequest.
    "grpc.max_send_message_length": 8 * 1024 * 1024,
  }) as unknown as grpc.Client & {
    check(
      req: CheckRequest,
      options: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: CheckResponse) => void,
    ): void;
  };
  return {
    check: (request) =>
      new Promise((resolve, reject) =>
        client.check(request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))),
      ),
    close: () => client.close(),
  };
}
