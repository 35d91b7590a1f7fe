import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authorization, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  type HealthCheckResponse,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { grpcDefinition } from "../../src/dataplane/grpc/grpc-server.js";
import { loadConfig } from "../../src/config/config.js";
import { startControlPlane } from "../../src/app/control-plane.js";
import { createLogger } from "../../src/logging.js";
import { sqliteTarget } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { createTestPki, type TestPki } from "../support/tls-certs.js";
import { run } from "../../src/cli/main.js";
import { toJson, type Output } from "../../src/cli/output.js";

// authz hands provider credentials to whoever reaches it and the meter bills what it is sent: with tls.* set, both
// gRPC roles accept only clients presenting a certificate signed by tls.client_ca_file (Envoy's).

const AuthzClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");
const HealthClient = grpc.makeGenericClientConstructor(grpcDefinition(Health), "Health");

type Unary<Res> = (
  req: unknown,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => void;

function call<Res>(client: grpc.Client, method: string, request: unknown): Promise<Res> {
  const fn = (client as unknown as Record<string, Unary<Res>>)[method]!.bind(client);
  return new Promise((resolve, reject) =>
    fn(request, new grpc.Metadata(), { deadline: Date.now() + 3_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

describe("mTLS on the Envoy-facing gRPC roles", () => {
  let pki: TestPki;
  let t: TestPlane;
  let authzAddress: string;
  let meterAddress: string;
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    pki = createTestPki();
    t = await startTestPlane(sqliteTarget(), {
      roles: ["authz", "meter"],
      env: {
        TOLLGATE_METER_LISTEN: "127.0.0.1:0",
        TOLLGATE_TLS_CERT_FILE: pki.serverCert,
        TOLLGATE_TLS_KEY_FILE: pki.serverKey,
        TOLLGATE_TLS_CLIENT_CA_FILE: pki.caCert,
      },
    });
    authzAddress = t.authzAddress;
    meterAddress = `127.0.0.1:${t.plane.metering.server!.port}`;
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.close();
    pki?.cleanup();
  });

  const tls = (cert?: string, key?: string) =>
    grpc.credentials.createSsl(pki.read(pki.caCert), key ? pki.read(key) : null, cert ? pki.read(cert) : null);
  const authz = (creds: grpc.ChannelCredentials) => {
    const c = new AuthzClient(authzAddress, creds);
    clients.push(c);
    return (request = envoyCheckRequest({ headers: {} })) => call<CheckResponse>(c, "check", request);
  };
  const health = (creds: grpc.ChannelCredentials) => {
    const c = new HealthClient(meterAddress, creds);
    clients.push(c);
    return () => call<HealthCheckResponse>(c, "check", create(HealthCheckRequestSchema, { service: "" }));
  };

  it("answers a Check from a client presenting a certificate signed by the client CA", async () => {
    const res = outcome(await authz(tls(pki.clientCert, pki.clientKey))());
    // No API key: a verdict (401) is an answer, which only a client that got through TLS receives.
    expect(res.httpStatus).toBe(401);
    expect(res.error?.code).toBe("missing_api_key");
  });

  it("refuses a TLS client without a certificate at the handshake", async () => {
    await expect(authz(tls())()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("refuses a client whose certificate another CA signed", async () => {
    await expect(authz(tls(pki.strangerCert, pki.strangerKey))()).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
  });

  it("refuses a plaintext client", async () => {
    await expect(authz(grpc.credentials.createInsecure())()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("the meter port takes the same client certificate and refuses plaintext and certificate-less clients", async () => {
    expect((await health(tls(pki.clientCert, pki.clientKey))()).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expect(health(grpc.credentials.createInsecure())()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(health(tls())()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("tollgate health probes a role with --ca, --cert and --key (container health checks), and fails without them", async () => {
    const probe = async (...extra: string[]) => {
      let result: unknown;
      const out: Output = {
        json: true,
        result: (v) => (result = JSON.parse(toJson(v))),
        info: () => {},
        error: () => {},
      };
      const code = await run(["health", "--address", meterAddress, ...extra, "--json"], out);
      return { code, result };
    };
    expect(
      await probe("--ca", pki.caCert, "--cert", pki.clientCert, "--key", pki.clientKey, "--server-name", "localhost"),
    ).toEqual({ code: 0, result: { address: meterAddress, status: "SERVING" } });
    expect((await probe()).code).not.toBe(0);
  });
});

describe("mTLS configuration", () => {
  const logger = createLogger({ level: "silent" });

  it("names the missing file when only some of tls.* are set", () => {
    expect(() => loadConfig({ env: { TOLLGATE_TLS_CERT_FILE: "/etc/tollgate/server.crt" } })).toThrow(
      "config: tls.key_file: required when cert_file is set (mTLS needs a certificate, its key and the CA that signs Envoy's client certificate) (from defaults)",
    );
    expect(() => loadConfig({ overrides: { "tls.meter.cert_file": "a", "tls.meter.key_file": "b" } })).toThrow(
      /^config: tls\.meter\.client_ca_file: required when cert_file and key_file are set/,
    );
  });

  it("fails start-up naming an unreadable file before anything listens", async () => {
    const target = sqliteTarget();
    const config = loadConfig({
      env: {
        TOLLGATE_DATABASE_URL: target.url,
        TOLLGATE_SIGNING_SECRET: "x".repeat(32),
        TOLLGATE_TLS_CERT_FILE: "/nonexistent/server.crt",
        TOLLGATE_TLS_KEY_FILE: "/nonexistent/server.key",
        TOLLGATE_TLS_CLIENT_CA_FILE: "/nonexistent/ca.crt",
      },
      overrides: { "authz.listen": "127.0.0.1:0" },
    });
    await expect(startControlPlane(config, { roles: ["authz"], logger })).rejects.toThrow(
      /^tls\.cert_file: cannot read \/nonexistent\/server\.crt: ENOENT/,
    );
    await target.cleanup();
  });
});
