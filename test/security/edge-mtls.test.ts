import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../../src/app/control-plane.js";
import { ConfigError, loadConfig, type Config } from "../../src/config/config.js";
import { startDataPlane, type RunningDataPlane } from "../../src/edge/data-plane.js";
import { createLogger } from "../../src/logging.js";
import { TEST_SIGNING_SECRET } from "../support/als-client.js";
import { sqliteTarget, type StoreTarget } from "../support/services.js";
import { createTestPki, type TestPki } from "../support/tls-certs.js";

// With tls.* set, authz and the meter accept only clients presenting a certificate signed by tls.client_ca_file.
// `tollgate serve` without Envoy puts the local edge in front of them: it must present tls.edge's certificate,
// or every request would be a 503 and every access-log entry lost.

const chat = (url: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

describe("the local edge over mTLS to its own roles", () => {
  let pki: TestPki;
  let target: StoreTarget;
  let plane: ControlPlane;
  let config: Config;
  const logger = createLogger({ level: process.env.H7_DEBUG ? "debug" : "silent" });

  /** The running roles' configuration with tls.edge set to `edge` (environment variables, as an operator would). */
  const withEdge = (edge: Record<string, string>): Config =>
    loadConfig({
      env: {
        TOLLGATE_DATABASE_URL: target.url,
        TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET,
        TOLLGATE_TLS_CERT_FILE: pki.serverCert,
        TOLLGATE_TLS_KEY_FILE: pki.serverKey,
        TOLLGATE_TLS_CLIENT_CA_FILE: pki.caCert,
        ...edge,
      },
      overrides: { "authz.listen": "127.0.0.1:0", "meter.listen": "127.0.0.1:0" },
    });
  const edgeFor = (cfg: Config): Promise<RunningDataPlane> =>
    startDataPlane({
      authzAddress: `127.0.0.1:${plane.authz!.port}`,
      meterAddress: `127.0.0.1:${plane.metering.server!.port}`,
      logger,
      config: cfg,
      envoy: null,
      edgePort: 0,
    });

  beforeAll(async () => {
    pki = createTestPki();
    target = sqliteTarget();
    config = withEdge({ TOLLGATE_TLS_EDGE_CERT_FILE: pki.clientCert, TOLLGATE_TLS_EDGE_KEY_FILE: pki.clientKey });
    plane = await startControlPlane(config, { roles: ["authz", "meter"], logger });
  });
  afterAll(async () => {
    await plane?.close();
    await target?.cleanup();
    pki?.cleanup();
  });

  it("gets authz's verdict through the edge and the edge's access log into the meter", async () => {
    const edge = await edgeFor(config);
    const received = plane.metering.meter.totals.received;
    const res = await chat(edge.url!);
    // No API key: authz's own verdict, which only a client that passed the mTLS handshake receives (else 503).
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("missing_api_key");
    // The edge's gRPC access log (flushed every second, as Envoy's) carries the denied request to the meter.
    const deadline = Date.now() + 5_000;
    while (plane.metering.meter.totals.received === received && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await edge.close();
    expect(plane.metering.meter.totals.received - received).toBe(1);
    expect(plane.metering.meter.totals.forged).toBe(0);
  });

  it("delivers the access log of a request made just before the edge closes (serve's shutdown)", async () => {
    const edge = await edgeFor(config);
    const received = plane.metering.meter.totals.received;
    expect((await chat(edge.url!)).status).toBe(401);
    // close() flushes the last batch and waits for the meter's answer, even while the TLS stream is still connecting.
    await edge.close();
    expect(plane.metering.meter.totals.received - received).toBe(1);
  });

  it("still refuses an edge certificate another CA signed: the roles' mTLS is not weakened", async () => {
    const edge = await edgeFor(
      withEdge({ TOLLGATE_TLS_EDGE_CERT_FILE: pki.strangerCert, TOLLGATE_TLS_EDGE_KEY_FILE: pki.strangerKey }),
    );
    try {
      const res = await chat(edge.url!);
      expect(res.status).toBe(503);
    } finally {
      await edge.close();
    }
  });

  it("refuses to start the edge in front of mTLS roles without tls.edge's certificate, naming the field", async () => {
    await expect(edgeFor(withEdge({}))).rejects.toThrow(ConfigError);
    await expect(edgeFor(withEdge({}))).rejects.toThrow(/tls\.edge\.cert_file: required when authz serves mTLS/);
  });

  it("names the missing half of tls.edge's certificate and key at load time", () => {
    expect(() => withEdge({ TOLLGATE_TLS_EDGE_CERT_FILE: pki.clientCert })).toThrow(
      "config: tls.edge.key_file: required when cert_file is set (the local edge presents a client certificate and its key) (from defaults)",
    );
  });
});
