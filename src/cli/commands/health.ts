import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus, type HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import { grpcDefinition } from "../../dataplane/grpc/grpc-server.js";
import { parse, required, type Handler } from "../cli-kit.js";

const HealthClient = grpc.makeGenericClientConstructor(grpcDefinition(Health), "Health");

/** `tollgate health --address HOST:PORT`: asks a role's grpc.health.v1 and exits 0 only when it is SERVING (container health checks). */
export const health: Handler = async (args, out) => {
  const { values } = parse(args, { address: { type: "string" }, service: { type: "string" } });
  const address = required(values.address, "--address");
  const client = new HealthClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(req: unknown, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: HealthCheckResponse) => void): void;
  };
  try {
    const response = await new Promise<HealthCheckResponse>((resolve, reject) =>
      client.check(create(HealthCheckRequestSchema, { service: values.service ?? "" }), { deadline: Date.now() + 2000 }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const status = HealthCheckResponse_ServingStatus[response.status] ?? String(response.status);
    out.result({ address, status }, () => `${address}: ${status}`);
    if (response.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`${address} is ${status}`);
  } finally {
    client.close();
  }
};
