// The local edge: a development stand-in for Envoy running envoy/envoy.local.yaml, so `npm start` and the e2e
// suite work on machines without an envoy binary. It is NOT the production data plane: production runs Envoy
// with envoy/envoy.yaml. It copies only what Tollgate relies on (ext_authz, the usage filter, provider routing,
// both access logs) and each such behaviour is pinned to the YAML by test/unit/edge/*.test.ts.
import { randomUUID } from "node:crypto";
import {
  createServer,
  STATUS_CODES,
  request as httpRequest,
  Agent as HttpAgent,
  type ClientRequest,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  AUTHZ_METADATA_KEYS,
  AUTHZ_METADATA_NAMESPACE,
  STREAM_HEADER_ON,
  TOLLGATE_HEADERS,
} from "../contract/index.js";
import type { ClientTlsFiles } from "../dataplane/grpc/client-credentials.js";
import {
  createUsageExtractor,
  rewriteRequestBody,
  type UsageExtractor,
  type UsageMetadata,
} from "../dataplane/usage/extract.js";
import type { Logger } from "../logging.js";
import { toFileLogLine, toHttpAccessLogEntry, type ExchangeRecord } from "./access-log.js";
import { createAlsClient, type AlsClient } from "./als-client.js";
import { createEdgeAuthzClient, type EdgeAuthzClient } from "./authz-client.js";
import { buildCheckRequest } from "./check-request.js";
import {
  applyHeaderEdits,
  readCheckResponse,
  type CheckResult,
  type HeaderEdit,
  type HeaderMap,
} from "./check-result.js";
import {
  AUTHZ_MAX_REQUEST_BYTES,
  AUTHZ_STATUS_ON_ERROR,
  LOCAL_FILE_LOG_PATH,
  NO_ROUTE_BODY,
  REQUEST_BUFFER_LIMIT_BYTES,
  REQUEST_HEADERS_TIMEOUT_MS,
  ROUTE_REMOVED_HEADERS,
  SERVER_NAME,
  STREAM_IDLE_TIMEOUT_MS,
} from "./envoy-contract.js";
import { createFileLog, type FileLog } from "./file-log.js";
import { loadEdgeEnvoyConfig, type EdgeEnvoyConfig } from "./envoy-yaml.js";

/** Options for the local edge; the defaults reproduce envoy.local.yaml's addresses. */
export interface EdgeOptions {
  /** tollgate authz, "host:port" (envoy.local.yaml: 127.0.0.1:9001). */
  authzAddress: string;
  /** tollgate meter for gRPC ALS, "host:port"; omit to send no ALS (the file log is still written). */
  meterAddress?: string;
  /** Client certificates for authz and the meter when they serve mTLS (config: tls.edge; absent: plaintext). */
  authzTls?: ClientTlsFiles;
  meterTls?: ClientTlsFiles;
  /** Listen host; default 0.0.0.0 like the Envoy listener. */
  host?: string;
  /** Listen port; default 10000, 0 picks a free one (tests). */
  port?: number;
  /** Provider id → upstream origin ("http://host:port"): replaces or adds to the bootstrap's provider routes. */
  upstreams?: Record<string, string>;
  /** Sends every provider route of the bootstrap here instead of its cluster's endpoint (tests: an ephemeral mock). */
  defaultUpstream?: string;
  /** JSON access log path; default envoy.local.yaml's, null writes none. */
  fileLogPath?: string | null;
  /** ALS batching interval (envoy.yaml: 1 s); tests shorten it. */
  alsFlushIntervalMs?: number;
  authzTimeoutMs?: number;
  logger?: Logger;
  /** Called with every finished exchange after both access logs are written (tests and diagnostics). */
  onExchange?: (record: ExchangeRecord) => void;
  /** The bootstrap whose local_reply_config and provider header removal the edge applies (envoy.local.yaml). */
  envoyYamlPath?: string;
  /** stream_idle_timeout (envoy.yaml: 300 s); tests shorten it. */
  streamIdleTimeoutMs?: number;
}

/** A running local edge. */
export interface Edge {
  port: number;
  /** Base URL clients use, e.g. "http://127.0.0.1:10000". */
  url: string;
  /** Sends buffered ALS entries now instead of at the next flush interval. */
  flushAccessLogs(): void;
  close(): Promise<void>;
}

// Connection-specific headers never cross a proxy (RFC 9110 §7.6.1); Envoy drops them both ways.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
]);
// decoder_header_mutation_rules: routing headers and x-envoy-* are refused, and disallow_is_error makes that a 500.
const REFUSED_MUTATIONS = new Set(["host", ":authority", ":method", ":scheme"]);
const INVALID_HEADER_VALUE = /[\r\n\0]/;

/** Starts the local edge: an HTTP/1.1 listener applying ext_authz, the usage filter and provider routing. */
export async function createEdge(options: EdgeOptions): Promise<Edge> {
  const authz: EdgeAuthzClient = createEdgeAuthzClient(options.authzAddress, options.authzTimeoutMs, options.authzTls);
  const logger = options.logger;
  const envoy: EdgeEnvoyConfig = loadEdgeEnvoyConfig(options.envoyYamlPath);
  const als: AlsClient | undefined = options.meterAddress
    ? createAlsClient({
        address: options.meterAddress,
        tls: options.meterTls,
        flushIntervalMs: options.alsFlushIntervalMs,
        onDrop: (count, reason) => logger?.warn({ dropped: count }, `edge: ${reason}`),
      })
    : undefined;
  const fileLogPath = options.fileLogPath === undefined ? LOCAL_FILE_LOG_PATH : options.fileLogPath;
  const fileLog: FileLog | undefined = fileLogPath
    ? createFileLog(fileLogPath, (error) => logger?.warn({ err: error }, "edge: file access log write failed"))
    : undefined;
  // The bootstrap's provider routes, as Envoy would take them; defaultUpstream (tests: an ephemeral mock) moves all.
  const routes = new Map<string, URL>();
  for (const [provider, origin] of Object.entries(envoy.providerUpstreams))
    routes.set(provider, new URL(options.defaultUpstream ?? origin));
  for (const [provider, base] of Object.entries(options.upstreams ?? {})) routes.set(provider, new URL(base));
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true });
  let streamIds = 0;

  function emit(record: ExchangeRecord): void {
    // Both logs are best effort: a logging fault must never reach the client or the process.
    try {
      als?.log(toHttpAccessLogEntry(record));
      fileLog?.append(toFileLogLine(record));
      options.onExchange?.(record);
    } catch (error) {
      logger?.warn({ err: error }, "edge: access log failed");
    }
  }

  /** A local reply (denial, error, no route), rewritten by the bootstrap's local_reply_config as Envoy does. */
  function send(
    res: ServerResponse,
    record: ExchangeRecord,
    status: number,
    edits: readonly HeaderEdit[],
    body: string,
  ) {
    const headers: HeaderMap = new Map();
    applyHeaderEdits(headers, edits);
    const out = envoy.localReply.rewrite({
      status,
      headers,
      body,
      flags: record.responseFlags,
      metadata: record.authz ? { [AUTHZ_METADATA_NAMESPACE]: record.authz } : {},
    });
    sendReply(res, record.requestId, out.status, out.headers, out.body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const startMs = Date.now();
    const requestId = randomUUID(); // generate_request_id, preserve_external_request_id: false
    const remote = { address: req.socket.remoteAddress ?? "", port: req.socket.remotePort ?? 0 };
    const local = { address: req.socket.localAddress ?? "", port: req.socket.localPort ?? 0 };
    const originalPath = req.url ?? "/";
    const authority = req.headers.host ?? "";
    const record: ExchangeRecord = {
      startMs,
      durationMs: 0,
      requestId,
      method: req.method ?? "GET",
      originalPath,
      path: originalPath,
      authority,
      scheme: "http",
      userAgent: req.headers["user-agent"] ?? "",
      forwardedFor: remote.address,
      remote,
      local,
      requestBodyBytes: 0,
      responseCode: 0,
      responseBodyBytes: 0,
      responseFlags: [],
    };
    let extractor: UsageExtractor | undefined;
    let usage: UsageMetadata | undefined;
    let upstream: ClientRequest | undefined;
    let upstreamCut = false;
    const endUsage = (cutShort: boolean) => {
      if (extractor && usage === undefined) usage = extractor.end(cutShort);
    };
    let done = false;
    // stream_idle_timeout: no byte either way for this long cuts the stream (flag SI). Before a response started,
    // Envoy answers "stream timeout" (504 once the request was read whole, else 408) through local_reply_config;
    // after, it resets the stream.
    let requestComplete = false;
    let idledOut = false;
    const idleMs = options.streamIdleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS;
    const idle = setTimeout(() => {
      if (done) return;
      idledOut = true;
      record.responseFlags.push("SI");
      if (!res.headersSent) {
        send(
          res,
          record,
          requestComplete ? 504 : 408,
          [{ name: "content-type", value: "text/plain", mode: "set" }],
          "stream timeout",
        );
        upstream?.destroy();
      } else res.destroy();
    }, idleMs);
    const active = () => idle.refresh();
    res.on("close", () => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      if (!res.writableFinished && !upstreamCut && !idledOut) record.responseFlags.push("DC");
      upstream?.destroy();
      endUsage(true);
      record.usage = usage;
      record.responseCode = res.headersSent ? res.statusCode : 0;
      record.durationMs = performance.now() - t0;
      emit(record);
    });
    const alive = () => !done && !res.destroyed;

    // Downstream request headers as Envoy's HCM leaves them: client x-envoy-* and x-request-id replaced,
    // x-forwarded-for appended with the peer (use_remote_address), x-forwarded-proto set, and the peer in
    // x-envoy-external-address (Envoy sets it for a peer it does not count as internal; the edge always does).
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!.toLowerCase();
      if (name.startsWith("x-envoy-") || name === "x-request-id" || name === "x-forwarded-proto") continue;
      pairs.push([name, req.rawHeaders[i + 1]!]);
    }
    pairs.push(
      ["x-request-id", requestId],
      ["x-forwarded-proto", "http"],
      ["x-envoy-external-address", remote.address],
    );
    const xff = pairs.filter(([n]) => n === "x-forwarded-for").map(([, v]) => v);
    record.forwardedFor = [...xff, remote.address].join(",");

    // Buffer the body: ext_authz takes the first 1 MiB (as bytes), the usage filter rewrites the whole of it.
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    // ext_authz stops buffering at the first chunk that brings its buffer to max_request_bytes or beyond.
    let bufferedAtCheck: number | undefined;
    try {
      for await (const chunk of req) {
        active();
        size += (chunk as Buffer).length;
        if (bufferedAtCheck === undefined && size >= AUTHZ_MAX_REQUEST_BYTES) bufferedAtCheck = size;
        if (size > REQUEST_BUFFER_LIMIT_BYTES) tooLarge = true;
        else chunks.push(chunk as Buffer);
      }
    } catch {
      return; // client went away mid-body; "close" logs it
    }
    if (!alive()) return;
    requestComplete = true;
    const body = Buffer.concat(chunks);
    record.requestBodyBytes = size;

    const check = buildCheckRequest({
      method: record.method,
      path: originalPath,
      authority,
      scheme: "http",
      protocol: `HTTP/${req.httpVersion}`,
      headers: pairs,
      body,
      bufferedBytes: bufferedAtCheck,
      remote,
      local,
      streamId: String(++streamIds),
      startMs,
    });
    let result: CheckResult;
    try {
      result = readCheckResponse(await authz.check(check));
    } catch (error) {
      // failure_mode_allow: false, status_on_error: 503; Envoy answers with an empty body.
      logger?.warn({ err: error }, "edge: authz check failed; answering 503");
      record.responseFlags.push("UAEX");
      if (alive()) send(res, record, AUTHZ_STATUS_ON_ERROR, [], "");
      return;
    }
    if (!alive()) return;
    if (Object.keys(result.metadata).length > 0) record.authz = result.metadata;
    if (result.kind === "deny") {
      record.responseFlags.push("UAEX");
      send(res, record, result.status, result.headers, result.body);
      return;
    }
    const responseEdits = result.responseHeaders;
    const refused = result.requestHeaders.find(
      (e) => REFUSED_MUTATIONS.has(e.name) || e.name.startsWith("x-envoy-") || INVALID_HEADER_VALUE.test(e.value),
    );
    if (refused) {
      logger?.error({ header: refused.name }, "edge: authz mutated a header envoy.yaml refuses; answering 500");
      record.responseFlags.push("UAEX");
      send(res, record, 500, [], "");
      return;
    }
    const headers: HeaderMap = new Map();
    for (const [name, value] of pairs) headers.set(name, [...(headers.get(name) ?? []), value]);
    let path = originalPath;
    const pathEdit = result.requestHeaders.filter((e) => e.name === ":path").pop();
    if (pathEdit) path = pathEdit.value;
    applyHeaderEdits(
      headers,
      result.requestHeaders.filter((e) => !e.name.startsWith(":")),
    );
    for (const name of result.removeHeaders) if (!name.startsWith(":") && name !== "host") headers.delete(name);
    record.path = path;

    // The usage filter's request side (envoy/usage.lua envoy_on_request).
    let upstreamBody: Buffer = body;
    const model = headers.get(TOLLGATE_HEADERS.upstreamModel)?.[0];
    const stream = headers.get(TOLLGATE_HEADERS.stream)?.[0];
    if (model !== undefined || stream !== undefined) {
      headers.delete(TOLLGATE_HEADERS.upstreamModel);
      headers.delete(TOLLGATE_HEADERS.stream);
      if (
        result.metadata[AUTHZ_METADATA_KEYS.decisionId] !== undefined &&
        model !== undefined &&
        body.length > 0 &&
        !tooLarge
      ) {
        const old = body.toString("utf8");
        const rewritten = rewriteRequestBody(old, model, stream === STREAM_HEADER_ON);
        if (rewritten !== old) upstreamBody = Buffer.from(rewritten, "utf8");
      }
    }
    if (tooLarge) {
      // The Lua filter's body() buffering hits per_connection_buffer_limit_bytes.
      send(
        res,
        record,
        413,
        [{ name: "content-type", value: "text/plain", mode: "set" }, ...responseEdits],
        "Payload Too Large",
      );
      return;
    }

    // Router: the route is chosen again (clear_route_cache) on the provider header authz set.
    const provider = headers.get(TOLLGATE_HEADERS.provider)?.[0];
    for (const name of ROUTE_REMOVED_HEADERS) headers.delete(name);
    // The virtual host's request_headers_to_remove (no client address toward providers) and request_headers_to_add
    // (accept-encoding: identity). Envoy edits the request's own header map, so the access log's forwarded_for is
    // empty afterwards too.
    for (const name of envoy.providerRemovedHeaders) headers.delete(name);
    applyHeaderEdits(
      headers,
      envoy.providerAddedHeaders.map((h) => ({
        name: h.name,
        value: h.value,
        mode:
          h.action === "OVERWRITE_IF_EXISTS_OR_ADD" ? "set" : h.action === "ADD_IF_ABSENT" ? "add_if_absent" : "add",
      })),
    );
    record.forwardedFor = headers.get("x-forwarded-for")?.join(",") ?? "";
    const target = provider !== undefined ? routes.get(provider) : undefined;
    if (!target) {
      send(
        res,
        record,
        503,
        [{ name: "content-type", value: "application/json", mode: "set" }, ...responseEdits],
        NO_ROUTE_BODY,
      );
      return;
    }
    record.routeName = provider;
    record.upstreamCluster = `provider_${provider}`;
    record.upstreamHost = `${target.hostname}:${target.port || (target.protocol === "https:" ? 443 : 80)}`;
    const outgoing: Record<string, string | string[]> = {};
    for (const [name, values] of headers)
      if (!HOP_BY_HOP.has(name) && name !== "host" && name !== "content-length")
        outgoing[name] = values.length === 1 ? values[0]! : values;
    outgoing["host"] = target.host; // auto_host_rewrite
    if (upstreamBody.length > 0 || record.method === "POST" || record.method === "PUT" || record.method === "PATCH") {
      outgoing["content-length"] = String(upstreamBody.length);
    }

    const secure = target.protocol === "https:";
    const upstreamRequest = (secure ? httpsRequest : httpRequest)({
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port || (secure ? 443 : 80),
      method: record.method,
      path,
      headers: outgoing,
      agent: secure ? httpsAgent : httpAgent,
    });
    upstream = upstreamRequest;
    upstreamRequest.on("error", (error) => {
      if (!alive() || idledOut) return;
      if (!res.headersSent) {
        record.responseFlags.push("UF");
        logger?.warn({ err: error, provider }, "edge: upstream connection failed");
        send(
          res,
          record,
          503,
          [{ name: "content-type", value: "text/plain", mode: "set" }],
          "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        );
      }
    });
    upstreamRequest.on("response", (upRes) => {
      if (!alive()) {
        upRes.destroy();
        return;
      }
      const status = upRes.statusCode ?? 502;
      const authzMeta: JsonObject = result.metadata;
      // The usage filter's response side meters only requests authz admitted.
      if (authzMeta[AUTHZ_METADATA_KEYS.decisionId] !== undefined) {
        const estimate = authzMeta[AUTHZ_METADATA_KEYS.promptTokensEstimate];
        extractor = createUsageExtractor({
          contentType: upRes.headers["content-type"],
          contentEncoding: upRes.headers["content-encoding"],
          status,
          promptTokensEstimate: typeof estimate === "number" ? estimate : null,
        });
      }
      const out: HeaderMap = new Map();
      for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) {
        const name = upRes.rawHeaders[i]!.toLowerCase();
        if (HOP_BY_HOP.has(name)) continue;
        out.set(name, [...(out.get(name) ?? []), upRes.rawHeaders[i + 1]!]);
      }
      applyHeaderEdits(out, responseEdits);
      out.set("x-request-id", [requestId]); // always_set_request_id_in_response
      out.set("server", [SERVER_NAME]);
      res.writeHead(status, flatten(out));
      res.flushHeaders();
      upRes.on("data", (chunk: Buffer) => {
        active();
        extractor?.push(chunk);
        record.responseBodyBytes += chunk.length;
        // Pass every chunk on as it arrives (SSE must not be held back); respect backpressure from a slow client.
        if (!res.write(chunk)) {
          upRes.pause();
          res.once("drain", () => upRes.resume());
        }
      });
      upRes.on("end", () => {
        endUsage(false);
        res.end();
      });
      upRes.on("close", () => {
        if (upRes.complete || !alive() || idledOut) return;
        // Upstream reset mid-response: Envoy resets the downstream stream too, and the usage stays incomplete.
        upstreamCut = true;
        record.responseFlags.push("UR");
        endUsage(true);
        res.destroy();
      });
    });
    // Envoy's last-upstream-tx-byte time: the provider has the whole prompt, so the meter bills it even if no
    // answer ever reaches the usage filter (the client leaves first). Not called when the connection fails.
    upstreamRequest.end(upstreamBody, () => {
      record.upstreamRequestSentMs = performance.now() - t0;
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger?.error({ err: error }, "edge: request failed");
      if (!res.headersSent) sendReply(res, "", 500, new Map(), "");
      else res.destroy();
    });
  });
  // request_headers_timeout, and the codec's own errors (malformed request, headers too large), answered the way
  // Envoy answers them: a local reply rewritten by local_reply_config, then the connection closed.
  server.headersTimeout = REQUEST_HEADERS_TIMEOUT_MS;
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const body = status === 408 ? "request header timeout" : (STATUS_CODES[status] ?? "");
    const out = envoy.localReply.rewrite({
      status,
      headers: new Map([["content-type", ["text/plain"]]]),
      body,
      flags: [],
      metadata: {},
    });
    out.headers.set("server", [SERVER_NAME]);
    out.headers.set("content-length", [String(Buffer.byteLength(out.body))]);
    out.headers.set("connection", ["close"]);
    let head = `HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? ""}\r\n`;
    for (const [name, values] of out.headers) for (const v of values) head += `${name}: ${v}\r\n`;
    socket.end(`${head}\r\n${out.body}`);
  });
  const host = options.host ?? "0.0.0.0";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 10000, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return {
    port,
    url: `http://${urlHost}:${port}`,
    flushAccessLogs: () => als?.flush(),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      httpAgent.destroy();
      httpsAgent.destroy();
      authz.close();
      await als?.close();
      await fileLog?.close();
    },
  };
}

/** Writes a local reply: status, its headers, the request id and Envoy's server name. */
function sendReply(res: ServerResponse, requestId: string, status: number, headers: HeaderMap, body: string): void {
  if (requestId) headers.set("x-request-id", [requestId]);
  headers.set("server", [SERVER_NAME]);
  headers.set("content-length", [String(Buffer.byteLength(body))]);
  res.writeHead(status, flatten(headers));
  res.end(body);
}

/** Node's writeHead takes a flat [name, value, name, value, …] list; it keeps repeated headers apart. */
function flatten(headers: HeaderMap): string[] {
  const out: string[] = [];
  for (const [name, values] of headers) for (const v of values) out.push(name, v);
  return out;
}
