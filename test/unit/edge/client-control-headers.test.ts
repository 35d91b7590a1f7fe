// The local edge does what envoy.yaml makes Envoy do with a client's x-envoy-* headers: none of them is obeyed
// (no retry, no hedge, no client-chosen timeout: the provider gets exactly one uncut request), none reaches the
// provider, and none reaches authz as if Envoy had set it (ext_authz never copies a client's
// x-envoy-auth-partial-body into the CheckRequest; it writes its own marker only when it buffered a body).
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  Authorization,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../../src/dataplane/grpc/grpc-server.js";
import { buildCheckRequest, type DownstreamRequest } from "../../../src/edge/check-request.js";
import { createEdge, type Edge } from "../../../src/edge/edge.js";
import { ENVOY_CONTROL_REQUEST_HEADERS, PARTIAL_BODY_HEADER } from "../../../src/contract/index.js";

const set = (key: string, value: string) => ({ header: { key, value }, append: false });
const ALLOW = create(CheckResponseSchema, {
  status: { code: 0 },
  httpResponse: {
    case: "okResponse",
    value: {
      headers: [
        set(":path", "/v1/chat/completions"),
        set("authorization", "Bearer mock-openai"),
        set("x-tollgate-provider", "openai"),
        set("x-tollgate-upstream-model", "upstream-model"),
      ],
    },
  },
  dynamicMetadata: { decision_id: "dec-1", prompt_tokens_estimate: 5 },
});

/** What a client would send to make Envoy retry, hedge, cut or re-time the provider request, or fool authz. */
const FORGED: Record<string, string> = {
  ...Object.fromEntries(ENVOY_CONTROL_REQUEST_HEADERS.map((h) => [h, "1"])),
  "x-envoy-retry-on": "5xx,reset,connect-failure,retriable-4xx,refused-stream",
  "x-envoy-retry-grpc-on": "unavailable",
  "x-envoy-max-retries": "5",
  "x-envoy-retriable-status-codes": "503",
  "x-envoy-hedge-on-per-try-timeout": "true",
  "x-envoy-upstream-rq-timeout-ms": "1",
  "x-envoy-upstream-rq-per-try-timeout-ms": "1",
  "x-envoy-upstream-stream-duration-ms": "1",
  "x-envoy-expected-rq-timeout-ms": "1",
  [PARTIAL_BODY_HEADER]: "true",
  "x-envoy-internal": "true",
};

function send(
  url: string,
  method: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { authorization: "Bearer tg_client", ...headers } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += String(c)));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("local edge: a client's x-envoy-* headers steer nothing", () => {
  let authz: RunningGrpcServer;
  let checks: CheckRequest[];
  let upstream: Server;
  let upstreamRequests: Array<IncomingMessage["headers"]>;
  let edge: Edge;
  let dir: string;

  beforeEach(async () => {
    checks = [];
    upstreamRequests = [];
    authz = await startGrpcServer("127.0.0.1:0", [
      {
        service: Authorization,
        implementation: {
          check(call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, cb: grpc.sendUnaryData<CheckResponse>) {
            checks.push(call.request);
            cb(null, ALLOW);
          },
        },
      },
    ]);
    // A provider that is slow (past every forged timeout) and then fails with a retriable 503.
    upstream = createServer(async (req, res) => {
      for await (const _ of req);
      upstreamRequests.push(req.headers);
      await new Promise((r) => setTimeout(r, 150));
      res.writeHead(503, { "content-type": "application/json" });
      res.end('{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}');
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    dir = mkdtempSync(join(tmpdir(), "tollgate-edge-xenvoy-"));
    edge = await createEdge({
      authzAddress: `127.0.0.1:${authz.port}`,
      host: "127.0.0.1",
      port: 0,
      defaultUpstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      fileLogPath: join(dir, "access.json"),
    });
  });
  afterEach(async () => {
    await edge.close();
    await authz.close(0);
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends the provider exactly one request, uncut, with no x-envoy-* header, and authz no forged marker", async () => {
    const res = await send(`${edge.url}/v1/chat/completions`, "POST", '{"model":"m","messages":[]}', {
      "content-type": "application/json",
      ...FORGED,
    });
    // Neither cut at 1 ms (a 504 or a reset) nor retried: the provider's own 503 arrives, once.
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).error.message).toBe("overloaded");
    await new Promise((r) => setTimeout(r, 300)); // room for a retry or a hedge, had one been sent
    expect(upstreamRequests).toHaveLength(1);
    expect(Object.keys(upstreamRequests[0]!).filter((h) => h.startsWith("x-envoy-"))).toEqual([]);
    // Authz sees Envoy's own marker for the body it buffered (complete), never the client's "true".
    const headers = checks[0]!.attributes!.request!.http!.headers;
    expect(Object.keys(headers).filter((h) => h.startsWith("x-envoy-"))).toEqual([PARTIAL_BODY_HEADER]);
    expect(headers[PARTIAL_BODY_HEADER]).toBe("false");
  });

  it("a bodiless request carries no partial-body marker to authz, whatever the client sent", async () => {
    await send(`${edge.url}/v1/models`, "GET", "", FORGED);
    const headers = checks[0]!.attributes!.request!.http!.headers;
    expect(Object.keys(headers).filter((h) => h.startsWith("x-envoy-"))).toEqual([]);
  });
});

describe("buildCheckRequest: ext_authz never copies a client's x-envoy-auth-partial-body", () => {
  const base: DownstreamRequest = {
    method: "POST",
    path: "/v1/chat/completions",
    authority: "h",
    scheme: "http",
    protocol: "HTTP/1.1",
    headers: [
      ["authorization", "Bearer a"],
      [PARTIAL_BODY_HEADER, "true"],
    ],
    body: new Uint8Array(),
    remote: { address: "10.0.0.7", port: 1 },
    local: { address: "10.0.0.1", port: 2 },
    streamId: "1",
    startMs: 0,
  };
  // allowed_headers unset sends every header; even then Envoy's setHttpRequest skips the client's marker.
  const everyHeader = { allowedHeaders: [] };

  it("no body: no marker at all", () => {
    const headers = buildCheckRequest(base, everyHeader).attributes!.request!.http!.headers;
    expect(headers["authorization"]).toBe("Bearer a");
    expect(headers[PARTIAL_BODY_HEADER]).toBeUndefined();
  });

  it("a whole body: Envoy's own false", () => {
    const headers = buildCheckRequest({ ...base, body: new Uint8Array(10) }, everyHeader).attributes!.request!.http!
      .headers;
    expect(headers[PARTIAL_BODY_HEADER]).toBe("false");
  });

  it("an allow list naming the marker does not let the client's through either", () => {
    const headers = buildCheckRequest(base, { allowedHeaders: [{ exact: PARTIAL_BODY_HEADER }] }).attributes!.request!
      .http!.headers;
    expect(headers[PARTIAL_BODY_HEADER]).toBeUndefined();
  });
});
