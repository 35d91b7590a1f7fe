import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { listenOn } from "../observability/listen.js";
import { AccountService } from "../gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../gen/tollgate/admin/v1/audit_pb.js";
import { AdminTokenService } from "../gen/tollgate/admin/v1/admin_tokens_pb.js";
import { adminTokenService } from "./admin-tokens-service.js";
import { CatalogueService } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService } from "../gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../gen/tollgate/admin/v1/plans_pb.js";
import { UsageService } from "../gen/tollgate/admin/v1/usage_pb.js";
import { WebhookService } from "../gen/tollgate/admin/v1/webhooks_pb.js";
import { webhookService } from "./webhooks-service.js";
import { ConsoleSessionService } from "../gen/tollgate/admin/v1/console_pb.js";
import { consoleSessionService } from "./console-session-service.js";
import { credentialOf } from "./access.js";
import { CONSOLE_PATH, serveConsole } from "./console-assets.js";
import { accountService } from "./accounts-service.js";
import type { AdminDeps } from "./admin-deps.js";
import { auditService } from "./audit-service.js";
import { catalogueService } from "./catalogue-service.js";
import { creditService } from "./credits-service.js";
import { keyService } from "./keys-service.js";
import { planService } from "./plans-service.js";
import { registerReflection } from "./reflection.js";
import { usageFilter, usageService } from "./usage-service.js";
import { usageSelection } from "../app/usage.js";
import { guarded, toConnectError } from "./errors.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Config } from "../config/config.js";
import type { Metrics } from "../observability/metrics.js";
import { createAdminGate, refuse } from "./admin-gate.js";

/** Every admin service, for routing and reflection. */
export const ADMIN_SERVICES = [
  AccountService,
  KeyService,
  PlanService,
  CatalogueService,
  CreditService,
  UsageService,
  AuditService,
  AdminTokenService,
  WebhookService,
  ConsoleSessionService,
] as const;

/** Registers the admin services (and reflection) on a Connect router: the server and the CLI's in-process transport share it. */
export function adminRoutes(deps: AdminDeps, options: { reflection?: boolean } = {}): (router: ConnectRouter) => void {
  return (router) => {
    router.service(AccountService, guarded(accountService(deps), AccountService.typeName, deps.logger));
    router.service(KeyService, guarded(keyService(deps), KeyService.typeName, deps.logger));
    router.service(PlanService, guarded(planService(deps), PlanService.typeName, deps.logger));
    router.service(CatalogueService, guarded(catalogueService(deps), CatalogueService.typeName, deps.logger));
    router.service(CreditService, guarded(creditService(deps), CreditService.typeName, deps.logger));
    router.service(UsageService, guarded(usageService(deps), UsageService.typeName, deps.logger));
    router.service(AuditService, guarded(auditService(deps), AuditService.typeName, deps.logger));
    router.service(AdminTokenService, guarded(adminTokenService(deps), AdminTokenService.typeName, deps.logger));
    router.service(WebhookService, guarded(webhookService(deps), WebhookService.typeName, deps.logger));
    router.service(
      ConsoleSessionService,
      guarded(consoleSessionService(deps), ConsoleSessionService.typeName, deps.logger),
    );
    if (options.reflection ?? true) registerReflection(router, ADMIN_SERVICES);
  };
}

/** A running admin server. */
export interface RunningAdminServer {
  port: number;
  close(): Promise<void>;
}

/** Whether the stores answer; /readyz reports it. */
export type ReadinessProbe = () => Promise<boolean>;

/** Where the admin API listens and what one connection may cost it (the `admin` config section). */
export type AdminTransportOptions = Config["admin"];

/**
 * Serves the admin API on one port: gRPC (HTTP/2 cleartext, prior knowledge), gRPC-Web and Connect over HTTP/1.1
 * or HTTP/2, gRPC reflection, /healthz, /readyz, /metrics and GET /export/usage.{csv,jsonl}. Node 20's h2c server cannot fall
 * back to HTTP/1.1, so each connection is sniffed: the HTTP/2 preface ("PRI * HTTP/2.0") goes to the HTTP/2
 * server, anything else to the HTTP/1.1 server; both run the same handler. Every request is authenticated from its
 * headers before its body is read (createAdminGate), bodies are capped at max_body_bytes and together at
 * max_buffered_bytes, a body must arrive within request_timeout_ms, connections beyond max_connections (or
 * max_connections_per_ip from one address) are refused, and a connection that stalls before its request headers or
 * goes idle is closed.
 */
export async function startAdminServer(
  options: AdminTransportOptions,
  deps: AdminDeps,
  ready: ReadinessProbe,
  metrics?: Metrics,
): Promise<RunningAdminServer> {
  const gate = createAdminGate(deps.authenticate, {
    maxBodyBytes: options.max_body_bytes,
    maxBufferedBytes: options.max_buffered_bytes,
    requests: deps.requests,
  });
  const served: AdminDeps = { ...deps, authenticate: gate.authenticate };
  const connect = connectNodeAdapter({
    routes: adminRoutes(served),
    readMaxBytes: options.max_body_bytes,
    fallback: (req, res) => void fallback(req, res as NodeResponse, served, ready, metrics),
  });
  const handler = (req: NodeRequest, res: NodeResponse) => {
    bodyDeadline(req, res, options.request_timeout_ms);
    void gate.admit(req, res).then((ok) => ok && gate.run(req, () => connect(req as never, res as never)));
  };
  const h1 = http.createServer(
    {
      headersTimeout: options.headers_timeout_ms,
      // The whole request (headers and body) within request_timeout_ms; a response may stream on after it.
      requestTimeout: Math.max(options.headers_timeout_ms, options.request_timeout_ms),
      keepAliveTimeout: options.idle_timeout_ms,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, options.headers_timeout_ms / 4)),
    },
    handler,
  );
  h1.timeout = options.idle_timeout_ms;
  // headersTimeout and requestTimeout are enforced by a timer node starts on "listening"; h1 never listens itself
  // (connections are handed to it), so it is started here.
  h1.emit("listening");
  // Node's default lets one HTTP/2 connection open 2^32-1 concurrent streams; an admin client needs a handful.
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 100 } }, handler);
  const sockets = new Set<net.Socket>();
  const perAddress = new Map<string, number>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  const server = net.createServer((socket) => {
    // One address may not hold every connection (admin.max_connections_per_ip); the extra one is closed at once.
    const address = socket.remoteAddress ?? "";
    const open = (perAddress.get(address) ?? 0) + 1;
    if (open > options.max_connections_per_ip) {
      socket.destroy();
      return;
    }
    perAddress.set(address, open);
    sockets.add(socket);
    socket.on("close", () => {
      sockets.delete(socket);
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
    socket.on("error", () => socket.destroy());
    // No bytes either way for idle_timeout_ms closes any connection, HTTP/1.1 or HTTP/2, whatever it is waiting on.
    socket.setTimeout(options.idle_timeout_ms, () => socket.destroy());
    sniff(socket, options.headers_timeout_ms, (head) => {
      if (head.toString("latin1", 0, 4) === "PRI ") {
        h2.emit("connection", replay(socket, head));
      } else {
        socket.unshift(head);
        h1.emit("connection", socket);
      }
    });
  });
  server.maxConnections = options.max_connections;
  const port = await listenOn(server, options.listen);
  return {
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.close(() => {});
      const force = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 2000);
      force.unref();
      await closed;
      clearTimeout(force);
    },
  };
}

/**
 * HTTP/2 has no request timeout of its own and a trickle resets the idle one, so each stream that carries a body must
 * have received it whole (END_STREAM) within `ms`; otherwise it is answered DeadlineExceeded (when nothing was sent
 * yet) and reset, which frees what was buffered for it. Only the request is timed: a response (the usage export) may
 * stream on for as long as the client reads it. HTTP/1.1 has node's requestTimeout for the same bound.
 */
function bodyDeadline(req: NodeRequest, res: NodeResponse, ms: number): void {
  if (!("stream" in req) || req.stream.endAfterHeaders) return;
  const stream = req.stream;
  const timer = setTimeout(() => {
    if (stream.closed || stream.destroyed) return;
    if (!res.headersSent)
      refuse(
        req,
        res,
        new ConnectError(
          `the request body did not arrive within admin.request_timeout_ms (${ms} ms)`,
          Code.DeadlineExceeded,
        ),
      );
    stream.close(http2.constants.NGHTTP2_CANCEL);
  }, ms);
  timer.unref();
  const done = () => clearTimeout(timer);
  stream.once("end", done);
  stream.once("close", done);
}

/**
 * Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1 and hands the bytes read to `route` from
 * within the "data" event, so the next listener sees the rest; a connection that has not sent that much within
 * `timeoutMs` is closed. (Pausing and resuming the socket around the hand-over would leave node's HTTP/1.1 parser
 * reading the socket without backpressure: an unread body would be buffered whole.)
 */
function sniff(socket: net.Socket, timeoutMs: number, route: (head: Buffer) => void): void {
  let head = Buffer.alloc(0);
  const deadline = setTimeout(() => socket.destroy(), timeoutMs);
  socket.once("close", () => clearTimeout(deadline));
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < 4 && "PRI ".startsWith(head.toString("latin1"))) return;
    clearTimeout(deadline);
    socket.off("data", onData);
    route(head);
  };
  socket.on("data", onData);
}

/**
 * The HTTP/2 server reads a net.Socket's handle directly, so bytes already read while sniffing would be lost; it is
 * given a stream that yields them first and then the rest of the socket.
 */
function replay(socket: net.Socket, first: Buffer): Duplex {
  const duplex = new Duplex({
    read: () => void socket.resume(),
    write: (chunk, encoding, done) => void socket.write(chunk, encoding, done),
    final: (done) => {
      socket.end();
      done();
    },
    destroy: (error, done) => {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  duplex.push(first);
  socket.on("data", (chunk) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("close", () => duplex.destroy());
  return duplex;
}

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

async function fallback(
  req: NodeRequest,
  res: NodeResponse,
  deps: AdminDeps,
  ready: ReadinessProbe,
  metrics: Metrics | undefined,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://admin");
  const send = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    if (url.pathname === "/healthz") return send(200, { status: "ok" });
    if (CONSOLE_PATH.test(url.pathname) && (req.method === "GET" || req.method === "HEAD"))
      return serveConsole(req, res, url.pathname);
    if (url.pathname === "/metrics" && metrics) {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { "content-type": contentType });
      res.end(body);
      return;
    }
    if (url.pathname === "/readyz") {
      const ok = await ready().catch(() => false);
      return send(ok ? 200 : 503, { status: ok ? "ready" : "unavailable" });
    }
    const exportMatch = /^\/export\/usage\.(csv|jsonl)$/.exec(url.pathname);
    if (exportMatch && req.method === "GET") {
      const who = await deps.authenticate(
        credentialOf({ get: (name) => (typeof req.headers[name] === "string" ? (req.headers[name] as string) : null) }),
      );
      const param = (name: string) => url.searchParams.get(name) ?? "";
      const when = (name: string) => {
        const text = param(name);
        if (text === "") return undefined;
        const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
        if (!Number.isFinite(ms)) throw new ConnectError(`${name}: must be an ISO time or epoch milliseconds`, 3);
        return timestampFromMs(ms);
      };
      const selection = usageSelection(
        who,
        usageFilter(
          {
            accountId: param("account_id"),
            keyId: param("key_id"),
            model: param("model"),
            startTime: when("start_time"),
            endTime: when("end_time"),
          } as never,
          "",
        ),
        "",
      );
      const format = exportMatch[1] as "csv" | "jsonl";
      res.writeHead(200, {
        "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
        "content-disposition": `attachment; filename="usage.${format}"`,
      });
      // pipeline waits on the socket's backpressure, so a slow client slows the reads instead of growing a buffer.
      await pipeline(Readable.from(deps.ops.usage.export(selection, format)), res as NodeJS.WritableStream);
      return;
    }
    send(404, { code: "not_found", message: `no route for ${req.method} ${url.pathname}` });
  } catch (error) {
    if (res.headersSent) {
      res.destroy?.(error as Error);
      return;
    }
    const e = toConnectError(error, deps.logger, url.pathname);
    send(codeToHttpStatus(e.code), { code: e.code, message: e.rawMessage });
  }
}
