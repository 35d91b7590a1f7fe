import { AsyncLocalStorage } from "node:async_hooks";
import type http from "node:http";
import type http2 from "node:http2";
import type net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJson } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { type Authenticate, credentialOf, isSessionCredential } from "./access.js";
import { CONSOLE_PATH } from "./console-assets.js";
import type { WriteLimiter } from "../app/write-limit.js";
import type { Principal } from "./tokens.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Paths answered without a token: probes and Prometheus (no body is read for them). Reflection needs a token like
 * every other call: its stream reads bodies, so an open one would let anyone hold memory on the port.
 */
const PUBLIC_PATH = /^\/(healthz|readyz|metrics)$/;

/**
 * What the gate bounds: one body (admin.max_body_bytes), the bodies of every request in progress together, and how
 * often one account token may call (admin.account_requests_per_second).
 */
export interface GateLimits {
  maxBodyBytes: number;
  maxBufferedBytes: number;
  requests?: WriteLimiter;
}

/** The gate in front of every admin request: who may send a body, how big, and how much of them at once. */
export interface AdminGate {
  /**
   * Authenticates a request from its headers and checks its declared length before a byte of its body is read.
   * Resolves true when the request may go on; otherwise it has been answered (protocol-appropriately) and false.
   */
  admit(req: NodeRequest, res: NodeResponse): Promise<boolean>;
  /** Runs `next` with the principal admit() found, so the services' own authentication does not query again. */
  run(req: NodeRequest, next: () => void): void;
  /** `authenticate` for the services: the request's admitted principal when the header matches, else a fresh check. */
  authenticate: Authenticate;
}

/**
 * Creates the gate: `authenticate` resolves tokens. Each admitted request with a body holds, until its body has been
 * read or it ends, what it may buffer (its declared length, else max_body_bytes, the most the services read); a body
 * that would take the total past max_buffered_bytes is refused ResourceExhausted before a byte of it is read.
 */
export function createAdminGate(authenticate: Authenticate, limits: GateLimits): AdminGate {
  const { maxBodyBytes, maxBufferedBytes, requests } = limits;
  let buffered = 0;
  const admitted = new WeakMap<NodeRequest, { authorization: string | null; principal: Principal }>();
  const current = new AsyncLocalStorage<{ authorization: string | null; principal: Principal }>();
  return {
    async admit(req, res) {
      const pathname = new URL(req.url ?? "/", "http://admin").pathname;
      if (PUBLIC_PATH.test(pathname)) return true;
      // The console's page and assets hold no data (every call it makes is authenticated like any other).
      if ((req.method === "GET" || req.method === "HEAD") && CONSOLE_PATH.test(pathname)) return true;
      const authorization = credentialOf({ get: (name) => header(req, name) });
      // A cookie is sent by the browser on its own, so a call it authenticates must prove it comes from the console.
      const crossSite = isSessionCredential(authorization) ? crossSiteReason(req) : undefined;
      if (crossSite !== undefined) {
        refuse(req, res, new ConnectError(crossSite, Code.PermissionDenied));
        return false;
      }
      let principal: Principal;
      try {
        principal = await authenticate(authorization);
      } catch (error) {
        refuse(req, res, ConnectError.from(error, Code.Unauthenticated));
        return false;
      }
      try {
        requests?.take(principal);
      } catch (error) {
        refuse(req, res, new ConnectError((error as Error).message, Code.ResourceExhausted), 429);
        return false;
      }
      const declared = Number(header(req, "content-length") ?? 0);
      if (declared > maxBodyBytes) {
        refuse(
          req,
          res,
          new ConnectError(
            `request body of ${declared} bytes is over admin.max_body_bytes (${maxBodyBytes})`,
            Code.ResourceExhausted,
          ),
        );
        return false;
      }
      const holds = bodyBound(req, maxBodyBytes);
      if (holds > 0) {
        if (buffered + holds > maxBufferedBytes) {
          refuse(
            req,
            res,
            new ConnectError(
              `the admin port is holding admin.max_buffered_bytes (${maxBufferedBytes}) of request bodies in progress; retry shortly`,
              Code.ResourceExhausted,
            ),
            429,
          );
          return false;
        }
        buffered += holds;
        // A body over the cap that Connect stops reading part way (chunked, no length declared) is answered and the
        // connection closed with bytes unread: linger as refusals do, so the client reads its 429, not an EPIPE.
        if (req.httpVersionMajor === 1) lingerOnClose((req as http.IncomingMessage).socket);
        let held = true;
        const release = () => {
          if (held) buffered -= holds;
          held = false;
        };
        req.once("end", release);
        res.once("close", release);
        res.once("finish", release);
      }
      admitted.set(req, { authorization, principal });
      return true;
    },
    run(req, next) {
      const held = admitted.get(req);
      if (held) current.run(held, next);
      else next();
    },
    authenticate(authorization) {
      const held = current.getStore();
      return held && held.authorization === authorization
        ? Promise.resolve(held.principal)
        : authenticate(authorization);
    },
  };
}

/** The most of a request's body the services may buffer: 0 when it has none, else its declared length or the cap. */
function bodyBound(req: NodeRequest, maxBodyBytes: number): number {
  if ("stream" in req && req.stream.endAfterHeaders) return 0;
  const declared = header(req, "content-length");
  if (declared !== null) return Math.min(Number(declared) || 0, maxBodyBytes);
  if (req.httpVersionMajor === 1 && header(req, "transfer-encoding") === null) return 0;
  return maxBodyBytes;
}

/** The header the console sends on every call; a page on another origin cannot send it without a CORS preflight. */
export const CONSOLE_HEADER = "x-tollgate-console";

/**
 * Why a cookie-authenticated request may be cross-site (CSRF), or undefined when it comes from the console: it must
 * carry CONSOLE_HEADER (which no other origin can add, since the admin port answers no CORS preflight), and the
 * Origin and Sec-Fetch-Site headers, when the browser sends them, must say the same origin.
 */
function crossSiteReason(req: NodeRequest): string | undefined {
  if (header(req, CONSOLE_HEADER) !== "1")
    return `a call authenticated by the console session cookie must carry ${CONSOLE_HEADER}: 1`;
  const site = header(req, "sec-fetch-site");
  if (site !== null && site !== "same-origin")
    return `a console session call must be same-origin (sec-fetch-site: ${site})`;
  const origin = header(req, "origin");
  if (origin === null) return undefined;
  const host = header(req, ":authority") ?? header(req, "host");
  let from: string | undefined;
  try {
    from = new URL(origin).host;
  } catch {
    from = undefined;
  }
  return from !== undefined && from === host ? undefined : `a console session call must come from the console's origin`;
}

function header(req: NodeRequest, name: string): string | null {
  const value = req.headers[name];
  return typeof value === "string" ? value : null;
}

/**
 * Answers a request the gate (or a deadline) refuses, in its own protocol: gRPC and gRPC-Web as a trailers-only
 * response, Connect streaming as an end-stream message, Connect unary and anything else as JSON with `httpStatus`
 * (default: the code's, 413 for ResourceExhausted, an oversized body). HTTP/1.1 connections are closed after the
 * answer, so the unread body is not read on.
 */
export function refuse(req: NodeRequest, res: NodeResponse, error: ConnectError, httpStatus?: number): void {
  const type = header(req, "content-type") ?? "";
  const close = req.httpVersionMajor === 1 ? { connection: "close" } : {};
  if (req.httpVersionMajor === 1) lingerOnClose((req as http.IncomingMessage).socket);
  if (/^application\/grpc(-web)?([+;]|$)/.test(type)) {
    // grpc-message is percent-encoded as the gRPC spec says (only bytes outside printable ASCII, and "%"), which
    // every client decodes alike; encodeURIComponent's "%3A" reaches grpc-js users undecoded.
    const message = error.rawMessage.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
    const status = {
      "content-type": type,
      ...Object.fromEntries(setTrailerStatus(new Headers(), error)),
      "grpc-message": message,
    };
    // Over HTTP/2 a trailers-only response is one HEADERS frame that ends the stream: grpc-js reads grpc-status
    // only from such a frame or from trailers, not from headers followed by an empty body.
    if ("stream" in res) res.stream.respond({ ":status": 200, ...status }, { endStream: true });
    else res.writeHead(200, { ...close, ...status }).end();
    return;
  }
  if (/^application\/connect\+/.test(type)) {
    const end = new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), error, undefined)));
    res.writeHead(200, { ...close, "content-type": type });
    res.end(encodeEnvelope(endStreamFlag, end));
    return;
  }
  const status = httpStatus ?? (error.code === Code.ResourceExhausted ? 413 : codeToHttpStatus(error.code));
  res.writeHead(status, { ...close, "content-type": "application/json" });
  res.end(JSON.stringify(errorToJson(error, undefined)));
}

/** How long a refused HTTP/1.1 connection stays half-closed after its answer, for the client to read it. */
const LINGER_MS = 1000;

/**
 * Closing a socket with unread bytes sends a TCP reset, and a client still sending its body would then lose the
 * answer (EPIPE) instead of reading the 401 or 413. So when node closes the connection after the answer, only the
 * write side is shut (FIN); reading stops (nothing more is parsed or buffered) and the socket is destroyed once the
 * client closes or after LINGER_MS.
 */
function lingerOnClose(socket: net.Socket): void {
  socket.destroySoon = () => {
    socket.removeAllListeners("data");
    socket.pause();
    socket.end();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
}
