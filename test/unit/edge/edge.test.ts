// The local edge against a fake authz (real gRPC) and a fake provider (real HTTP): the CheckRequest it sends is
// the one envoy.local.yaml configures, CheckResponses are applied as Envoy applies them, streams pass through
// unbuffered, and a client that leaves mid-stream yields incomplete usage.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  Authorization,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../../src/dataplane/grpc/grpc-server.js";
import { buildCheckRequest } from "../../../src/edge/check-request.js";
import { createEdge, type Edge } from "../../../src/edge/edge.js";
import { toFileLogLine, toHttpAccessLogEntry, type ExchangeRecord } from "../../../src/edge/access-log.js";
import { recordFromFileLine, recordFromHttpEntry } from "../../../src/dataplane/accesslog/log-record.js";
import { HTTPAccessLogEntrySchema } from "../../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { AUTHZ_ALLOWED_HEADERS, FILE_LOG_FORMAT } from "../../../src/edge/envoy-contract.js";

const set = (key: string, value: string) => ({ header: { key, value }, append: false });
const ALLOW = (extra: { stream?: boolean } = {}) =>
  create(CheckResponseSchema, {
    status: { code: 0 },
    httpResponse: {
      case: "okResponse",
      value: {
        headers: [
          set(":path", "/v1/chat/completions"),
          set("authorization", "Bearer mock-openai"),
          set("x-tollgate-provider", "openai"),
          set("x-tollgate-upstream-model", "upstream-model"),
          ...(extra.stream ? [set("x-tollgate-stream", "1")] : []),
        ],
        headersToRemove: ["x-tollgate-decision-id"],
        responseHeadersToAdd: [set("x-tollgate-decision-id", "dec-1"), set("x-ratelimit-remaining-requests", "9")],
      },
    },
    dynamicMetadata: { decision_id: "dec-1", prompt_tokens_estimate: 5 },
  });

interface Upstream {
  server: Server;
  url: string;
  requests: Array<{ path: string; headers: IncomingMessage["headers"]; body: string }>;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

async function startUpstream(): Promise<Upstream> {
  const up: Upstream = {
    server: undefined as unknown as Server,
    url: "",
    requests: [],
    handler: (_q, r) => r.end("{}"),
  };
  up.server = createServer(async (req, res) => {
    let body = "";
    for await (const c of req) body += String(c);
    up.requests.push({ path: req.url ?? "", headers: req.headers, body });
    up.handler(req, res);
  });
  await new Promise<void>((r) => up.server.listen(0, "127.0.0.1", r));
  up.url = `http://127.0.0.1:${(up.server.address() as AddressInfo).port}`;
  return up;
}

function post(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingMessage["headers"]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer tg_client", ...headers },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += String(c)));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("local edge", () => {
  let authz: RunningGrpcServer | undefined;
  let checks: CheckRequest[];
  let answer: () => CheckResponse;
  let upstream: Upstream;
  let edge: Edge;
  let records: ExchangeRecord[];
  let dir: string;

  beforeEach(async () => {
    checks = [];
    records = [];
    answer = () => ALLOW();
    authz = await startGrpcServer("127.0.0.1:0", [
      {
        service: Authorization,
        implementation: {
          check(call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, cb: grpc.sendUnaryData<CheckResponse>) {
            checks.push(call.request);
            cb(null, answer());
          },
        },
      },
    ]);
    upstream = await startUpstream();
    dir = mkdtempSync(join(tmpdir(), "tollgate-edge-unit-"));
    edge = await createEdge({
      authzAddress: `127.0.0.1:${authz.port}`,
      host: "127.0.0.1",
      port: 0,
      defaultUpstream: upstream.url,
      fileLogPath: join(dir, "access.json"),
      onExchange: (r) => records.push(r),
    });
  });
  afterEach(async () => {
    await edge.close();
    await authz?.close(0);
    upstream.server.closeAllConnections();
    await new Promise((r) => upstream.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends authz the CheckRequest envoy.yaml configures: allowed headers only, pseudo-headers, raw body bytes", async () => {
    const body = JSON.stringify({ model: "m", messages: [] });
    await post(`${edge.url}/v1/chat/completions?x=1`, body, {
      "x-secret-header": "no",
      "x-request-id": "client-chosen",
      "x-tollgate-provider": "evil",
    });
    const http = checks[0]!.attributes!.request!.http!;
    expect(Object.keys(http.headers).sort()).toEqual([
      ":authority",
      ":method",
      ":path",
      "authorization",
      "content-type",
      "x-envoy-auth-partial-body",
      "x-request-id",
      "x-tollgate-provider",
    ]);
    expect(AUTHZ_ALLOWED_HEADERS.some((p) => "exact" in p && p.exact === ":scheme")).toBe(false);
    expect(http.headers[":path"]).toBe("/v1/chat/completions?x=1");
    expect(http.headers[":method"]).toBe("POST");
    expect(http.headers["authorization"]).toBe("Bearer tg_client");
    expect(http.headers["x-envoy-auth-partial-body"]).toBe("false");
    // generate_request_id with preserve_external_request_id: false: the client's id is replaced.
    expect(http.headers["x-request-id"]).not.toBe("client-chosen");
    expect(http.path).toBe("/v1/chat/completions?x=1");
    expect(http.body).toBe("");
    expect(new TextDecoder().decode(http.rawBody)).toBe(body);
  });

  it("cuts the body for authz at 1 MiB and marks it partial (allow_partial_message), but forwards all of it", async () => {
    const body = JSON.stringify({ model: "m", pad: "x".repeat(1_048_576) });
    await post(`${edge.url}/v1/chat/completions`, body);
    const http = checks[0]!.attributes!.request!.http!;
    expect(http.rawBody.length).toBe(1_048_576);
    expect(http.headers["x-envoy-auth-partial-body"]).toBe("true");
    expect(upstream.requests[0]!.body.length).toBe(body.length + "upstream-model".length - 1);
  });

  it("marks the body as Envoy does at the buffer boundary: a buffer filled to exactly 1 MiB reads complete", () => {
    const request = (bufferedBytes: number | undefined, size: number) =>
      buildCheckRequest({
        method: "POST",
        path: "/v1/chat/completions",
        authority: "h",
        scheme: "http",
        protocol: "HTTP/1.1",
        headers: [["authorization", "Bearer a"]],
        body: new Uint8Array(size),
        bufferedBytes,
        remote: { address: "127.0.0.1", port: 1 },
        local: { address: "127.0.0.1", port: 2 },
        streamId: "1",
        startMs: 0,
      }).attributes!.request!.http!;
    const limit = 1_048_576;
    // More body follows, but the chunks filled the buffer exactly: Envoy sends "false" (authz must 413 it anyway).
    const exact = request(limit, limit + 4096);
    expect(exact.rawBody.length).toBe(limit);
    expect(exact.headers["x-envoy-auth-partial-body"]).toBe("false");
    // A chunk took the buffer past the limit: cut and marked.
    const past = request(limit + 100, limit + 4096);
    expect(past.rawBody.length).toBe(limit);
    expect(past.headers["x-envoy-auth-partial-body"]).toBe("true");
    // limit - 1, the whole body: complete.
    const under = request(undefined, limit - 1);
    expect(under.rawBody.length).toBe(limit - 1);
    expect(under.headers["x-envoy-auth-partial-body"]).toBe("false");
  });

  it("joins repeated headers with a comma in the CheckRequest, as Envoy's headers map does", () => {
    const check = buildCheckRequest({
      method: "POST",
      path: "/v1/chat/completions",
      authority: "h",
      scheme: "http",
      protocol: "HTTP/1.1",
      headers: [
        ["Authorization", "Bearer a"],
        ["authorization", "Bearer b"],
        ["x-other", "dropped"],
      ],
      body: new Uint8Array(),
      remote: { address: "127.0.0.1", port: 1 },
      local: { address: "127.0.0.1", port: 2 },
      streamId: "1",
      startMs: 0,
    });
    const headers = check.attributes!.request!.http!.headers;
    expect(headers["authorization"]).toBe("Bearer a,Bearer b");
    expect(headers["x-other"]).toBeUndefined();
    expect(headers["x-envoy-auth-partial-body"]).toBeUndefined(); // no body, no marker
  });

  it("applies an allow: :path and credential set, internal headers consumed, model rewritten, response headers added", async () => {
    const res = await post(`${edge.url}/v1/chat/completions`, '{"model":"m","messages":[]}', {
      "x-tollgate-decision-id": "forged",
    });
    const sent = upstream.requests[0]!;
    expect(sent.path).toBe("/v1/chat/completions");
    expect(sent.headers.authorization).toBe("Bearer mock-openai");
    expect(Object.keys(sent.headers).filter((h) => h.startsWith("x-tollgate-"))).toEqual([]);
    expect(sent.body).toBe('{"model":"upstream-model","messages":[]}');
    expect(res.headers["x-tollgate-decision-id"]).toBe("dec-1");
    expect(res.headers["x-ratelimit-remaining-requests"]).toBe("9");
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("applies a denial: status, headers and body from the CheckResponse; nothing goes upstream", async () => {
    answer = () =>
      create(CheckResponseSchema, {
        status: { code: 16 },
        httpResponse: {
          case: "deniedResponse",
          value: {
            status: { code: 401 },
            headers: [set("content-type", "application/json")],
            body: '{"error":{"code":"invalid_api_key"}}',
          },
        },
        dynamicMetadata: { verdict: "invalid_api_key" },
      });
    const res = await post(`${edge.url}/v1/chat/completions`, "{}");
    expect(res.status).toBe(401);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.body).toBe('{"error":{"code":"invalid_api_key"}}');
    expect(upstream.requests).toHaveLength(0);
  });

  it("answers 503 when authz fails (failure_mode_allow: false), and nothing goes upstream", async () => {
    await authz!.close(0);
    authz = undefined;
    const res = await post(`${edge.url}/v1/chat/completions`, "{}");
    expect(res.status).toBe(503);
    expect(upstream.requests).toHaveLength(0);
  });

  it("passes SSE through unbuffered: the first event reaches the client before the provider finishes", async () => {
    answer = () => ALLOW({ stream: true });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    upstream.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
      void released.then(() => {
        res.write('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n');
        res.end();
      });
    };
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("first SSE event was held back by the edge")), 2_000);
      const req = request(
        `${edge.url}/v1/chat/completions`,
        { method: "POST", headers: { authorization: "Bearer tg_x" } },
        (res) => {
          res.once("data", (c) => {
            clearTimeout(timer);
            resolve(String(c));
            release();
          });
          res.resume();
        },
      );
      req.end('{"model":"m","stream":true}');
    });
    expect(first).toContain('"content":"hi"');
    expect(JSON.parse(upstream.requests[0]!.body)).toEqual({
      model: "upstream-model",
      stream: true,
      stream_options: { include_usage: true },
    });
    await until(() => records.length === 1);
    expect(records[0]!.usage).toEqual({
      prompt_tokens: 3,
      completion_tokens: 1,
      cached_tokens: 0,
      reasoning_tokens: 0,
      source: "provider",
      complete: true,
      estimate_reason: "",
    });
  });

  it("a compressed response (content-encoding despite identity) is passed on and estimated as compressed", async () => {
    answer = () => ALLOW();
    const body = gzipSync('{"usage":{"prompt_tokens":3,"completion_tokens":4}}');
    upstream.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(body);
    };
    const res = await post(`${edge.url}/v1/chat/completions`, '{"model":"m"}');
    expect(res.status).toBe(200);
    expect(res.headers["content-encoding"]).toBe("gzip");
    await until(() => records.length === 1);
    expect(records[0]!.usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: Math.ceil(body.length / 4),
      cached_tokens: 0,
      reasoning_tokens: 0,
      source: "estimate",
      complete: true,
      estimate_reason: "compressed",
    });
  });

  it("a client that disconnects mid-stream yields complete=false usage, a DC flag, and the upstream is closed", async () => {
    answer = () => ALLOW({ stream: true });
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    upstream.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"choices":[{"delta":{"content":"abcdefgh"}}]}\n\n');
      res.on("close", () => upstreamClosed()); // never ends on its own
    };
    await new Promise<void>((resolve) => {
      const req = request(
        `${edge.url}/v1/chat/completions`,
        { method: "POST", headers: { authorization: "Bearer tg_x" } },
        (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.end('{"model":"m","stream":true}');
    });
    await closed;
    await until(() => records.length === 1);
    expect(records[0]!.responseFlags).toContain("DC");
    expect(records[0]!.usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: 2,
      cached_tokens: 0,
      reasoning_tokens: 0,
      source: "estimate",
      complete: false,
      estimate_reason: "cut_short",
    });
  });

  it("a client that leaves before a non-streaming answer: DC, no usage, the request sent upstream, in both logs", async () => {
    let received!: () => void;
    const got = new Promise<void>((r) => (received = r));
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    upstream.handler = (_req, res) => {
      received(); // the whole body is in (startUpstream reads it first); the answer never comes
      res.on("close", () => upstreamClosed());
    };
    const req = request(`${edge.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer tg_x" },
    });
    req.on("error", () => {});
    req.end('{"model":"m","messages":[{"role":"user","content":"a long prompt"}]}');
    await got;
    req.destroy();
    await closed;
    await until(() => records.length === 1);
    const record = records[0]!;
    expect(record).toMatchObject({ responseCode: 0, responseFlags: ["DC"], usage: undefined });
    expect(record.upstreamRequestSentMs).toBeGreaterThanOrEqual(0);
    const entry = toHttpAccessLogEntry(record);
    expect(entry.commonProperties?.timeToLastUpstreamTxByte).toBeDefined();
    const fromAls = recordFromHttpEntry(toBinary(HTTPAccessLogEntrySchema, entry));
    const fromFile = recordFromFileLine(toFileLogLine(record));
    for (const lifted of [fromAls, fromFile]) {
      expect(lifted).toMatchObject({ responseFlags: ["DC"], upstreamRequestSent: true, status: 0 });
    }
  });

  it("a request whose provider cannot be reached carries no upstream send (UF), so nothing is billed for it", async () => {
    await edge.close();
    edge = await createEdge({
      authzAddress: `127.0.0.1:${authz!.port}`,
      host: "127.0.0.1",
      port: 0,
      defaultUpstream: "http://127.0.0.1:1",
      fileLogPath: null,
      onExchange: (r) => records.push(r),
    });
    const res = await post(`${edge.url}/v1/chat/completions`, '{"model":"m"}');
    expect(res.status).toBe(503);
    await until(() => records.length === 1);
    expect(records[0]!.responseFlags).toEqual(["UF"]);
    expect(records[0]!.upstreamRequestSentMs).toBeUndefined();
    expect(recordFromFileLine(toFileLogLine(records[0]!))).toMatchObject({ upstreamRequestSent: false });
  });

  it("stream idle timeout before the provider answers: SI, Envoy's 504 mapped to JSON timeout, the prompt billable", async () => {
    await edge.close();
    edge = await createEdge({
      authzAddress: `127.0.0.1:${authz!.port}`,
      host: "127.0.0.1",
      port: 0,
      defaultUpstream: upstream.url,
      fileLogPath: null,
      streamIdleTimeoutMs: 300,
      onExchange: (r) => records.push(r),
    });
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    upstream.handler = (_req, res) => res.on("close", () => upstreamClosed()); // thinks for ever
    const res = await post(`${edge.url}/v1/chat/completions`, '{"model":"m"}');
    expect(res.status).toBe(504);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["x-should-retry"]).toBe("false");
    expect(JSON.parse(res.body).error).toMatchObject({ type: "server_error", code: "timeout" });
    await closed; // the upstream request is abandoned
    await until(() => records.length === 1);
    expect(records[0]!.responseFlags).toEqual(["SI"]);
    expect(records[0]!.upstreamRequestSentMs).toBeGreaterThanOrEqual(0);
    // What the meter reads (this fake authz's metadata has no prices; test/unit/metering-client-left.test.ts bills it).
    expect(recordFromFileLine(toFileLogLine(records[0]!))).toMatchObject({
      responseFlags: ["SI"],
      upstreamRequestSent: true,
    });
  });

  it("the codec's own errors are Envoy's local replies mapped to JSON: 431 headers too large, 400 malformed", async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(edge.port, "127.0.0.1", () => socket.end(text));
        let got = "";
        socket.on("data", (c) => (got += String(c)));
        socket.on("close", () => resolve(got));
        socket.on("error", reject);
      });
    const tooLarge = await raw(`GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(tooLarge).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(tooLarge.slice(tooLarge.indexOf("\r\n\r\n") + 4)).error.code).toBe("request_too_large");
    const malformed = await raw("NOT HTTP AT ALL\r\n\r\n");
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /);
    expect(malformed).toContain("content-type: application/json");
    expect(JSON.parse(malformed.slice(malformed.indexOf("\r\n\r\n") + 4)).error.code).toBe("invalid_request");
    expect(checks).toHaveLength(0);
  });

  it("writes file-log lines with exactly envoy.yaml's json_format keys", async () => {
    await post(`${edge.url}/v1/chat/completions`, '{"model":"m"}');
    await edge.close();
    const lines = readFileSync(join(dir, "access.json"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(Object.keys(lines[0]!)).toEqual(Object.keys(FILE_LOG_FORMAT));
    expect(lines[0]).toMatchObject({
      response_code: 200,
      response_flags: "-",
      log_type: "DownstreamEnd",
      authz: { decision_id: "dec-1" },
      usage: { complete: true },
    });
    expect(typeof lines[0]!.duration_ms).toBe("number");
    edge = await createEdge({ authzAddress: "127.0.0.1:1", port: 0, host: "127.0.0.1", fileLogPath: null }); // for afterEach
  });
});

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
