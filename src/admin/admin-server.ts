import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { listenOn } from "../observability/listen.js";
import { AccountService } from "../gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService } from "../gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../gen/tollgate/admin/v1/plans_pb.js";
import { UsageService } from "../gen/tollgate/admin/v1/usage_pb.js";
import { accountService } from "./accounts-service.js";
import type { AdminDeps } from "./admin-deps.js";
import { auditService } from "./audit-service.js";
import { catalogueService } from "./catalogue-service.js";
import { creditService } from "./credits-service.js";
import { keyService } from "./keys-service.js";
import { planService } from "./plans-service.js";
import { registerReflection } from "./reflection.js";
import { exportUsage } from "./usage-export.js";
import { usageSelection, usageService } from "./usage-service.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Metrics } from "../observability/metrics.js";

/** Every admin service, for routing and reflection. */
export const ADMIN_SERVICES = [AccountService, KeyService, PlanService, CatalogueService, CreditService, UsageService, AuditService] as const;

/** Registers the admin services (and reflection) on a Connect router: the server and the CLI's in-process transport share it. */
export function adminRoutes(deps: AdminDeps, options: { reflection?: boolean } = {}): (router: ConnectRouter) => void {
  return (router) => {
    router.service(AccountService, accountService(deps));
    router.service(KeyService, keyService(deps));
    router.service(PlanService, planService(deps));
    router.service(CatalogueService, catalogueService(deps));
    router.service(CreditService, creditService(deps));
    router.service(UsageService, usageService(deps));
    router.service(AuditService, auditService(deps));
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

/**
 * Serves the admin API on one port: gRPC (HTTP/2 cleartext, prior knowledge), gRPC-Web and Connect over HTTP/1.1
 * or HTTP/2, gRPC reflection, /healthz, /readyz, /metrics and GET /export/usage.{csv,jsonl}. Node 20's h2c server cannot fall
 * back to HTTP/1.1, so each connection is sniffed: the HTTP/2 preface ("PRI * HTTP/2.0") goes to the HTTP/2
 * server, anything else to the HTTP/1.1 server; both run the same handler.
 */
export async function startAdminServer(address: string, deps: AdminDeps, ready: ReadinessProbe, metrics?: Metrics): Promise<RunningAdminServer> {
  const handler = connectNodeAdapter({
    routes: adminRoutes(deps),
    fallback: (req, res) => void fallback(req, res as NodeResponse, deps, ready, metrics),
  });
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4 && "PRI ".startsWith(head.toString("latin1"))) return;
      socket.off("data", sniff);
      socket.pause();
      if (head.toString("latin1", 0, 4) === "PRI ") {
        h2.emit("connection", replay(socket, head));
      } else {
        socket.unshift(head);
        h1.emit("connection", socket);
      }
      socket.resume();
    };
    socket.on("data", sniff);
  });
  const port = await listenOn(server, address);
  return {
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
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

async function fallback(req: NodeRequest, res: NodeResponse, deps: AdminDeps, ready: ReadinessProbe, metrics: Metrics | undefined): Promise<void> {
  const url = new URL(req.url ?? "/", "http://admin");
  const send = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    if (url.pathname === "/healthz") return send(200, { status: "ok" });
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
      const who = await deps.authenticate((req.headers.authorization as string | undefined) ?? null);
      const param = (name: string) => url.searchParams.get(name) ?? "";
      const when = (name: string) => {
        const text = param(name);
        if (text === "") return undefined;
        const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
        if (!Number.isFinite(ms)) throw new ConnectError(`${name}: must be an ISO time or epoch milliseconds`, 3);
        return timestampFromMs(ms);
      };
      const selection = usageSelection(who, { accountId: param("account_id"), keyId: param("key_id"), model: param("model"), startTime: when("start_time"), endTime: when("end_time") } as never, "");
      const format = exportMatch[1] as "csv" | "jsonl";
      res.writeHead(200, {
        "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
        "content-disposition": `attachment; filename="usage.${format}"`,
      });
      // pipeline waits on the socket's backpressure, so a slow client slows the reads instead of growing a buffer.
      await pipeline(Readable.from(exportUsage(deps.stores.db.knex, selection, format)), res as NodeJS.WritableStream);
      return;
    }
    send(404, { code: "not_found", message: `no route for ${req.method} ${url.pathname}` });
  } catch (error) {
    if (res.headersSent) {
      res.destroy?.(error as Error);
      return;
    }
    const e = ConnectError.from(error);
    send(codeToHttpStatus(e.code), { code: e.code, message: e.rawMessage });
  }
}
