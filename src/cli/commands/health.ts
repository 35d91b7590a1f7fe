import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { grpcDefinition } from "../../dataplane/grpc/grpc-server.js";
import { parse, required, UsageError, type Handler } from "../cli-kit.js";

const HealthClient = grpc.makeGenericClientConstructor(grpcDefinition(Health), "Health");

/** Plaintext, or mTLS with --ca, --cert and --key (a role with tls.* set accepts only client certificates). */
function credentials(values: { ca?: string; cert?: string; key?: string; "server-name"?: string }): {
  creds: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
} {
  if (!values.ca && !values.cert && !values.key) return { creds: grpc.credentials.createInsecure(), options: {} };
  if (!values.ca || !values.cert || !values.key) throw new UsageError("--ca, --cert and --key go together (mTLS)");
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new UsageError(`${flag}: cannot read ${file}: ${(error as Error).message}`);
    }
  };
  const creds = grpc.credentials.createSsl(
    read(values.ca, "--ca"),
    read(values.key, "--key"),
    read(values.cert, "--cert"),
  );
  // The role's certificate names its service (e.g. authz), not the loopback address a container probes.
  return { creds, options: values["server-name"] ? { "grpc.ssl_target_name_override": values["server-name"] } : {} };
}

/** `tollgate health --address HOST:PORT`: asks a role's grpc.health.v1 and exits 0 only when it is SERVING (container health checks). */
export const health: Handler = async (args, out) => {
  const { values } = parse(args, {
    address: { type: "string" },
    service: { type: "string" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    "server-name": { type: "string" },
  });
  const address = required(values.address, "--address");
  const { creds, options } = credentials(values);
  const client = new HealthClient(address, creds, options) as unknown as grpc.Client & {
    check(
      req: unknown,
      options: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: HealthCheckResponse) => void,
    ): void;
  };
  try {
    const response = await new Promise<HealthCheckResponse>((resolve, reject) =>
      client.check(
        create(HealthCheckRequestSchema, { service: values.service ?? "" }),
        { deadline: Date.now() + 2000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    const status = HealthCheckResponse_ServingStatus[response.status] ?? String(response.status);
    out.result({ address, status }, () => `${address}: ${status}`);
    if (response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`${address} is ${status}`);
  } finally {
    client.close();
  }
};
