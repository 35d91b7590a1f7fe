import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, openDatabase } from "../../src/adapters/sql/database.js";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { spawnCli, until } from "../support/cli.js";
import { freePort } from "../support/ports.js";

const MiB = 2 ** 20;
const LIST_ACCOUNTS = "/tollgate.admin.v1.AccountService/ListAccounts";
const CONNECT_JSON = { "content-type": "application/json", "connect-protocol-version": "1" };

/** `serve --role admin` in its own process, so its resident memory is its own. */
interface AdminProcess {
  child: ChildProcess;
  port: number;
  url: string;
  rssMiB(): number;
  /** Bytes the process has read through read syscalls (sockets included): what it took in, kept or not. */
  readBytes(): number;
  close(): Promise<void>;
}

async function startAdminProcess(databaseUrl: string, env: Record<string, string>): Promise<AdminProcess> {
  const port = await freePort();
  const child = spawnCli(["serve", "--role", "admin"], {
    TOLLGATE_DATABASE_URL: databaseUrl,
    TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${port}`,
    TOLLGATE_LOG_LEVEL: "warn",
    ...env,
  });
  let out = "";
  child.stderr!.on("data", (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("tollgate: admin (")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`admin exited (${code}) before listening: ${out}`)));
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    rssMiB: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) / 1024,
    readBytes: () => Number(/rchar:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/io`, "utf8"))![1]),
    async close() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * Runs `fn` while sampling the server's RSS; returns how far it rose above where it started and how much the server
 * read meanwhile, in MiB. RSS alone would not tell, after an earlier test has grown the heap it can reuse.
 */
async function rssGrowth<T>(
  server: AdminProcess,
  fn: () => Promise<T>,
): Promise<{ result: T; growthMiB: number; readMiB: number }> {
  const base = server.rssMiB();
  const read = server.readBytes();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, server.rssMiB())), 5);
  try {
    const result = await fn();
    peak = Math.max(peak, server.rssMiB());
    return { result, growthMiB: peak - base, readMiB: (server.readBytes() - read) / MiB };
  } finally {
    clearInterval(timer);
  }
}

/** How an upload ended: the response (if any) and how many body bytes had been handed to the socket when it came. */
interface Upload {
  status?: number;
  body: string;
  writtenAtResponse?: number;
  error?: string;
}

/**
 * Past this many bytes an upload waits a millisecond after each write (64 MB/s at most): over loopback a client can
 * hand 50 MB to the kernel in less time than a loaded machine takes to schedule the server's answer, and the answer
 * would then look as if it waited for the body. A server that does wait for the body still answers only after it.
 */
const PACED_AFTER_BYTES = MiB;

/**
 * POSTs `total` bytes (64 KiB writes, honouring backpressure, paced past PACED_AFTER_BYTES) and stops writing as soon
 * as a response arrives.
 */
function upload(port: number, headers: Record<string, string>, total: number, declareLength: boolean): Promise<Upload> {
  return new Promise((resolve) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: LIST_ACCOUNTS,
      method: "POST",
      agent: false,
      headers: { ...headers, ...(declareLength ? { "content-length": String(total) } : {}) },
    });
    const result: Upload = { body: "" };
    let written = 0;
    let stopped = false;
    const stop = () => {
      stopped = true;
      wake();
    };
    let wake = () => {};
    req.on("response", (res) => {
      result.status = res.statusCode;
      result.writtenAtResponse = written;
      stop();
      res.setEncoding("utf8");
      res.on("data", (d: string) => (result.body += d));
      res.on("end", () => resolve(result));
      res.on("error", () => resolve(result));
    });
    req.on("error", (error) => {
      result.error = error.message;
      stop();
      if (result.status === undefined) resolve(result);
    });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    void (async () => {
      while (!stopped && written < total) {
        const piece = chunk.subarray(0, Math.min(chunk.length, total - written));
        const more = req.write(piece);
        written += piece.length;
        if (!more) await new Promise<void>((r) => ((wake = r), req.once("drain", r)));
        if (written >= PACED_AFTER_BYTES) await new Promise((r) => setTimeout(r, 1));
      }
      if (!stopped) req.end();
    })();
  });
}

/** How a gRPC call over HTTP/2 ended: its status and how many message bytes had been written when the answer came. */
interface GrpcUpload {
  status?: string;
  message?: string;
  writtenAtResponse?: number;
  error?: string;
}

/**
 * Sends one gRPC message of `size` bytes (its 5-byte prefix first, then the payload in 64 KiB writes honouring HTTP/2
 * flow control) and stops at the first grpc-status, in headers (trailers-only) or trailers. A raw HTTP/2 client, so
 * what is measured is the server's answer, not a client library's handling of an early reply.
 */
function grpcUpload(url: string, headers: Record<string, string>, size: number): Promise<GrpcUpload> {
  return new Promise((resolve) => {
    const session = http2.connect(url);
    const result: GrpcUpload = {};
    let written = 0;
    let stopped = false;
    const finish = () => {
      stopped = true;
      session.destroy();
      resolve(result);
    };
    const stream = session.request({
      ":method": "POST",
      ":path": LIST_ACCOUNTS,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const status = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      result.status = String(h["grpc-status"]);
      result.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      result.writtenAtResponse = written;
      finish();
    };
    stream.on("response", status);
    stream.on("trailers", status);
    stream.on("data", () => {});
    stream.on("close", () => !stopped && finish());
    stream.on("error", (error) => (result.error = error.message));
    session.on("error", (error) => (result.error = error.message));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(size, 1);
    stream.write(prefix);
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    void (async () => {
      while (!stopped && written < size) {
        const piece = chunk.subarray(0, Math.min(chunk.length, size - written));
        const more = stream.write(piece);
        written += piece.length;
        if (!more) await new Promise<void>((r) => (stream.once("drain", r), stream.once("close", r)));
      }
      if (!stopped) stream.end();
    })();
  });
}

/** Opens `count` sockets that each send `first` and then nothing; resolves once all are connected. */
async function stalledSockets(
  port: number,
  count: number,
  first: (i: number) => string,
): Promise<{ sockets: net.Socket[]; closed: () => number }> {
  let closed = 0;
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1", () => {
            socket.write(first(i));
            resolve(socket);
          });
          socket.on("error", () => {});
          socket.on("close", () => closed++);
          // Read whatever the server answers (a 408, HTTP/2 SETTINGS), so its close is seen.
          socket.resume();
          socket.once("error", reject);
        }),
    ),
  );
  return { sockets, closed: () => closed };
}

/** GET /healthz on a fresh connection: the status, or the error that ended it. */
function healthz(port: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/healthz", agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e) => resolve(e.message));
  });
}

describe("admin port transport limits", { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-admin-transport-"));
  const databaseUrl = `sqlite:${join(dir, "tollgate.db")}`;
  let server: AdminProcess;
  let capped: AdminProcess;
  let token = "";

  beforeAll(async () => {
    const db = await openDatabase(databaseUrl);
    await migrate(db);
    token = (await createAdminTokenStore(db).create({ kind: "operator" }, "transport test")).secret;
    await db.close();
    [server, capped] = await Promise.all([
      startAdminProcess(databaseUrl, {
        TOLLGATE_ADMIN_MAX_BODY_BYTES: String(64 * 1024),
        TOLLGATE_ADMIN_HEADERS_TIMEOUT_MS: "1000",
        TOLLGATE_ADMIN_IDLE_TIMEOUT_MS: "2000",
        // The stalled-connection tests open hundreds from one address: they are about timeouts, not the per-IP cap.
        TOLLGATE_ADMIN_MAX_CONNECTIONS_PER_IP: "100000",
      }),
      startAdminProcess(databaseUrl, {
        TOLLGATE_ADMIN_MAX_CONNECTIONS: "20",
        TOLLGATE_ADMIN_MAX_CONNECTIONS_PER_IP: "100000",
        TOLLGATE_ADMIN_HEADERS_TIMEOUT_MS: "60000",
      }),
    ]);
    // Warm every path once, so lazily loaded code does not count as growth or reads.
    for (const declareLength of [true, false]) {
      await upload(server.port, { ...CONNECT_JSON, authorization: `Bearer ${token}` }, 1024, declareLength);
      await upload(server.port, CONNECT_JSON, 1024, declareLength);
    }
    await grpcUpload(server.url, {}, 1024);
    await grpcUpload(server.url, { authorization: `Bearer ${token}` }, 1024);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([server?.close(), capped?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  for (const declareLength of [true, false]) {
    const how = declareLength ? "with Content-Length" : "chunked";
    it(`refuses an unauthenticated 50 MB POST (${how}) with 401 before reading its body`, async () => {
      const total = 50 * MiB;
      const { result, growthMiB, readMiB } = await rssGrowth(server, () =>
        upload(server.port, CONNECT_JSON, total, declareLength),
      );
      expect(result.status).toBe(401);
      expect(JSON.parse(result.body)).toMatchObject({ code: "unauthenticated" });
      // The answer came while the client was still sending: the server did not wait for (or keep) the body.
      expect(result.writtenAtResponse).toBeLessThan(total);
      expect(growthMiB).toBeLessThan(20);
      // Bytes the server took off the socket (discarded, not kept) until the connection closed: under CI load the
      // close lands later, so the bound is "far from all of it", not a fixed figure; RSS above is what must not grow.
      expect(readMiB).toBeLessThan(40);
    });
  }

  it("refuses an authenticated body over admin.max_body_bytes with 413 resource_exhausted, without reading it", async () => {
    const total = 50 * MiB;
    const { result, growthMiB, readMiB } = await rssGrowth(server, () =>
      upload(server.port, { ...CONNECT_JSON, authorization: `Bearer ${token}` }, total, true),
    );
    expect(result.status).toBe(413);
    const body = JSON.parse(result.body) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toContain("65536");
    expect(result.writtenAtResponse).toBeLessThan(total);
    expect(growthMiB).toBeLessThan(20);
    expect(readMiB).toBeLessThan(40);
  });

  it("stops reading an authenticated chunked body at admin.max_body_bytes and says resource_exhausted", async () => {
    const total = 50 * MiB;
    const { result, growthMiB, readMiB } = await rssGrowth(server, () =>
      upload(server.port, { ...CONNECT_JSON, authorization: `Bearer ${token}` }, total, false),
    );
    // Connect maps resource_exhausted to HTTP 429. The server may close the connection while the client is still
    // writing, which can cut the body off on a loaded machine; the status alone names the code then.
    expect(result.status, result.error).toBe(429);
    if (result.body !== "") expect(JSON.parse(result.body)).toMatchObject({ code: "resource_exhausted" });
    expect(result.writtenAtResponse).toBeLessThan(total);
    expect(growthMiB).toBeLessThan(20);
    expect(readMiB).toBeLessThan(40);
  });

  it("refuses an unauthenticated 50 MB gRPC message over HTTP/2 with Unauthenticated, without reading it", async () => {
    const size = 50 * MiB;
    const { result, growthMiB, readMiB } = await rssGrowth(server, () => grpcUpload(server.url, {}, size));
    expect(result.status).toBe(String(Code.Unauthenticated));
    expect(result.writtenAtResponse).toBeLessThan(size);
    expect(growthMiB).toBeLessThan(20);
    expect(readMiB).toBeLessThan(40);
  });

  it("refuses an authenticated gRPC message over admin.max_body_bytes with ResourceExhausted, without reading it", async () => {
    const size = 50 * MiB;
    const { result, growthMiB, readMiB } = await rssGrowth(server, () =>
      grpcUpload(server.url, { authorization: `Bearer ${token}` }, size),
    );
    expect(result.status).toBe(String(Code.ResourceExhausted));
    expect(result.message).toContain("65536");
    expect(result.writtenAtResponse).toBeLessThan(size);
    expect(growthMiB).toBeLessThan(20);
    expect(readMiB).toBeLessThan(40);
  });

  it("still answers a small gRPC call through a client library: Unauthenticated without a token, OK with one", async () => {
    const anonymous = createClient(AccountService, createGrpcTransport({ baseUrl: server.url }));
    await expect(anonymous.listAccounts({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    const operator = createClient(
      AccountService,
      createGrpcTransport({
        baseUrl: server.url,
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      }),
    );
    expect((await operator.listAccounts({})).accounts).toEqual([]);
  });

  it("closes 200 connections that sent one byte and stalled, within admin.headers_timeout_ms", async () => {
    // "G" starts an HTTP/1.1 request line; "P" could still be the HTTP/2 preface, so it waits in the sniffer.
    const { sockets, closed } = await stalledSockets(server.port, 200, (i) => (i % 2 === 0 ? "G" : "P"));
    try {
      // headers_timeout_ms is 1 s here; the bound leaves room for a loaded machine, and without a timeout they never close.
      await until("stalled sockets closed", () => closed() === 200, 8000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("closes an HTTP/2 connection that sent its preface and then nothing, after admin.idle_timeout_ms", async () => {
    const { sockets, closed } = await stalledSockets(server.port, 1, () => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    try {
      await until("idle HTTP/2 connection closed", () => closed() === 1, 10_000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("refuses connections beyond admin.max_connections and accepts again once some close", async () => {
    const { sockets } = await stalledSockets(capped.port, 20, () => "G");
    try {
      await sleep(200);
      expect(typeof (await healthz(capped.port))).toBe("string");
      for (const s of sockets.slice(0, 5)) s.destroy();
      await until("a slot frees up", async () => (await healthz(capped.port)) === 200, 10_000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});
