import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescService,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";

/** Per-method request decoders replacing protobuf-es's full decode (a hot path reading only what it needs). */
export type RequestDecoders = Readonly<Record<string, (bytes: Buffer) => unknown>>;

/**
 * Turns a protobuf-es service descriptor into a grpc-js service definition. grpc-js needs serialize/deserialize
 * functions per method; protobuf-es supplies them from the generated schema, so no proto-loader or hand-written
 * codec is involved, except where `decoders` names a method (by local name) whose requests it decodes itself.
 */
export function grpcDefinition(service: DescService, decoders: RequestDecoders = {}): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: decoders[method.localName] ?? deserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
      originalName: method.localName,
    };
  }
  return definition;
}

/** Serializes with protobuf-es; bytes a handler already encoded (a hot path's pre-encoded response) pass through. */
function serializer<Desc extends DescMessage>(schema: Desc) {
  return (message: MessageShape<Desc> | Uint8Array) => {
    const bytes = message instanceof Uint8Array ? message : toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<Desc extends DescMessage>(schema: Desc) {
  return (bytes: Buffer) => fromBinary(schema, bytes);
}

/** The serving state of each service name, read by grpc.health.v1 (Envoy's health checker asks for ""). */
export interface HealthState {
  set(service: string, serving: boolean): void;
  /** Marks every service NOT_SERVING, e.g. while draining on SIGTERM. */
  shutdown(): void;
}

/** Implements grpc.health.v1.Health (Check and Watch) over a mutable status table. */
export function createHealthService(): { state: HealthState; implementation: grpc.UntypedServiceImplementation } {
  const statuses = new Map<string, HealthCheckResponse_ServingStatus>([
    ["", HealthCheckResponse_ServingStatus.SERVING],
  ]);
  const watchers = new Set<{ service: string; call: grpc.ServerWritableStream<{ service: string }, unknown> }>();
  const statusOf = (service: string) => statuses.get(service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
  const notify = () => {
    for (const w of watchers) w.call.write(create(HealthCheckResponseSchema, { status: statusOf(w.service) }));
  };
  return {
    state: {
      set(service, serving) {
        statuses.set(
          service,
          serving ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING,
        );
        notify();
      },
      shutdown() {
        for (const service of statuses.keys()) statuses.set(service, HealthCheckResponse_ServingStatus.NOT_SERVING);
        notify();
      },
    },
    implementation: {
      check(call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) {
        const status = statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
          return;
        }
        callback(null, create(HealthCheckResponseSchema, { status }));
      },
      watch(call: grpc.ServerWritableStream<{ service: string }, unknown>) {
        const watcher = { service: call.request.service, call };
        watchers.add(watcher);
        call.write(create(HealthCheckResponseSchema, { status: statusOf(watcher.service) }));
        call.on("cancelled", () => watchers.delete(watcher));
      },
    },
  };
}

/** A running gRPC server. */
export interface RunningGrpcServer {
  port: number;
  health: HealthState;
  /** Stops accepting calls, lets in-flight calls finish (up to `graceMs`), then closes. */
  close(graceMs?: number): Promise<void>;
}

/** PEM files for mutual TLS: this server's certificate and key, and the CA its clients' certificates must chain to. */
export interface MutualTlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile: string;
}

/** A TLS file that cannot be used; the message names the file and the config field. */
export class TlsFileError extends Error {
  override name = "TlsFileError";
}

/** Reads a PEM file named by config field `tls.<field>`, refusing one that is unreadable or holds no PEM block. */
export function readPem(file: string, field: string, marker: RegExp): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (error) {
    throw new TlsFileError(`tls.${field}: cannot read ${file}: ${(error as Error).message}`);
  }
  if (!marker.test(pem.toString("latin1")))
    throw new TlsFileError(
      `tls.${field}: ${file} holds no PEM ${field.endsWith("key_file") ? "private key" : "certificate"}`,
    );
  return pem;
}

/**
 * Server credentials requiring a client certificate signed by `clientCaFile` (authz hands provider credentials to
 * its caller and the meter bills what it is sent: only Envoy may connect). Without files: plaintext.
 */
export function serverCredentials(tls: MutualTlsFiles | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const cert = readPem(tls.certFile, "cert_file", /-----BEGIN CERTIFICATE-----/);
  const key = readPem(tls.keyFile, "key_file", /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
  const ca = readPem(tls.clientCaFile, "client_ca_file", /-----BEGIN CERTIFICATE-----/);
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/** Listens on `address` with the given services plus grpc.health.v1. Bodies up to 8 MiB pass (Check carries them). */
export async function startGrpcServer(
  address: string,
  services: ReadonlyArray<{
    service: DescService;
    implementation: grpc.UntypedServiceImplementation;
    decoders?: RequestDecoders;
  }>,
  options: { tls?: MutualTlsFiles } = {},
): Promise<RunningGrpcServer> {
  // Read (and fail on) the files before anything listens.
  const credentials = serverCredentials(options.tls);
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 8 * 1024 * 1024,
    "grpc.max_send_message_length": 8 * 1024 * 1024,
  });
  const health = createHealthService();
  for (const { service, implementation, decoders } of services) {
    server.addService(grpcDefinition(service, decoders), implementation);
    health.state.set(service.typeName, true);
  }
  server.addService(grpcDefinition(Health), health.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    health: health.state,
    close(graceMs = 10_000) {
      health.state.shutdown();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
