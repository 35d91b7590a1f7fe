import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { sqliteTarget } from "../support/services.js";
import { until } from "../support/cli.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";

const KiB = 1024;
const GRPC = "application/grpc+proto";
const REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const LIST_ACCOUNTS = "/tollgate.admin.v1.AccountService/ListAccounts";

/** A gRPC length prefix announcing a `size`-byte message (the message itself is sent, or not, by the caller). */
function prefix(size: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(size, 1);
  return b;
}

/** Opens a gRPC stream on `session` and sends `bytes` of a 60 KiB message (under max_body_bytes) without ending it. */
function partial(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, bytes: number) {
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": GRPC,
    te: "trailers",
    ...headers,
  });
  let status: string | undefined;
  let reset = false;
  stream.on("response", (h) => (status = (h["grpc-status"] as string | undefined) ?? status));
  stream.on("trailers", (t) => (status = (t["grpc-status"] as string | undefined) ?? status));
  stream.on("error", () => (reset = true));
  stream.on("close", () => (reset = reset || stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR));
  stream.resume();
  stream.write(Buffer.concat([prefix(60 * KiB), Buffer.alloc(bytes - 5)]));
  return { stream, status: () => status, closed: () => stream.closed, reset: () => reset };
}

/**
 * The hostile review of issue 11 (item 9, continued): over HTTP/2 one connection could open 100 streams each holding
 * a partly sent message, no deadline covered a stream that trickled, reflection was open to anyone, and one client
 * could hold every connection.
 */
describe("admin port: HTTP/2 streams, reflection and per-IP connections", { timeout: 60_000 }, () => {
  let h: AdminHarness;
  let port: number;
  let auth: Record<string, string>;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget(), {
      env: {
        TOLLGATE_ADMIN_MAX_BODY_BYTES: String(64 * KiB),
        TOLLGATE_ADMIN_MAX_BUFFERED_BYTES: String(256 * KiB),
        TOLLGATE_ADMIN_REQUEST_TIMEOUT_MS: "1500",
        TOLLGATE_ADMIN_MAX_CONNECTIONS_PER_IP: "8",
      },
    });
    port = h.t.plane.admin!.port;
    auth = { authorization: `Bearer ${h.operatorToken}` };
  });
  afterAll(() => h?.close());

  it("reflection needs an admin token", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const anonymous = partial(session, REFLECTION, {}, 16);
      await until("anonymous reflection answered", () => anonymous.status() !== undefined || anonymous.closed(), 5000);
      expect(anonymous.status()).toBe("16");
    } finally {
      session.destroy();
    }
  });

  it("refuses new bodies once admin.max_buffered_bytes is held by partly sent messages, and accepts again when they go", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const other = http2.connect(`http://127.0.0.1:${port}`);
    try {
      // Four streams may each hold up to max_body_bytes (64 KiB): the 256 KiB budget.
      const held = Array.from({ length: 4 }, () => partial(session, LIST_ACCOUNTS, auth, 32 * KiB));
      await sleep(200);
      expect(held.map((s) => s.status())).toEqual([undefined, undefined, undefined, undefined]);
      const refused = partial(other, LIST_ACCOUNTS, auth, 1 * KiB);
      await until("the fifth body refused", () => refused.status() !== undefined, 5000);
      expect(refused.status()).toBe("8");
      for (const s of held) s.stream.close(http2.constants.NGHTTP2_CANCEL);
      await until("held streams closed", () => held.every((s) => s.closed()), 5000);
      await sleep(50);
      const client = h.client(AccountService);
      expect((await client.listAccounts({})).accounts).toBeDefined();
    } finally {
      session.destroy();
      other.destroy();
    }
  });

  it("resets a stream whose body has not arrived within admin.request_timeout_ms, however it trickles", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const slow = partial(session, LIST_ACCOUNTS, auth, 1 * KiB);
      const trickle = setInterval(() => !slow.closed() && slow.stream.write(Buffer.alloc(16)), 200);
      try {
        // 1.5 s deadline; the bound leaves room for a loaded machine. Without a deadline the trickle keeps it open.
        await until("trickling stream ended by the server", () => slow.closed() || slow.status() !== undefined, 8000);
      } finally {
        clearInterval(trickle);
      }
      expect(slow.status() === "4" || slow.reset()).toBe(true);
      // The connection itself still serves.
      const ok = session.request({ ":method": "GET", ":path": "/healthz" });
      const status = await new Promise<number>((resolve) => ok.on("response", (hd) => resolve(Number(hd[":status"]))));
      ok.resume();
      expect(status).toBe(200);
    } finally {
      session.destroy();
    }
  });

  it("does not cut a usage export that streams past admin.request_timeout_ms, over HTTP/1.1 or HTTP/2", async () => {
    // Enough rows that the export is still being written (against a paused reader) when the deadline passes.
    const rows = 40_000;
    const knex = h.t.plane.stores.db.knex;
    const row = (i: number) => ({
      decision_id: `d_${String(i).padStart(8, "0")}`,
      request_id: `r_${i}`,
      time: 1_700_000_000_000 + i,
      account_id: "acct_export",
      key_id: "key_export",
      model: "gpt-5.5",
      provider: "openai",
      status: 200,
      prompt_tokens: 10,
      completion_tokens: 20,
      cached_tokens: 0,
      reasoning_tokens: 0,
      cost: 1234,
      estimated: false,
      duration_ms: 5,
    });
    for (let i = 0; i < rows; i += 500)
      await knex("usage_log").insert(Array.from({ length: 500 }, (_, j) => row(i + j)));
    const slowly = (res: NodeJS.ReadableStream) =>
      new Promise<string>((resolve, reject) => {
        res.pause();
        const chunks: Buffer[] = [];
        setTimeout(() => {
          res.on("data", (d: Buffer) => chunks.push(d));
          res.on("end", () => resolve(Buffer.concat(chunks).toString()));
          res.on("close", () => resolve(Buffer.concat(chunks).toString()));
          res.on("error", reject);
          res.resume();
        }, 2500);
      });
    const overH1 = await new Promise<string>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port, path: "/export/usage.csv?account_id=acct_export", headers: auth, agent: false },
        (res) => slowly(res).then(resolve, reject),
      );
      req.on("error", reject);
    });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const stream = session.request({
        ":method": "GET",
        ":path": "/export/usage.csv?account_id=acct_export",
        ...auth,
      });
      const overH2 = await slowly(stream);
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      for (const csv of [overH1, overH2]) {
        const lines = csv.trimEnd().split("\n");
        expect(lines[0]).toMatch(/^time,decision_id/);
        expect(lines).toHaveLength(rows + 1);
      }
    } finally {
      session.destroy();
    }
  });

  it("refuses connections from one address beyond admin.max_connections_per_ip", async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => {});
        sockets.push(s);
      }
      await until(
        "the connections beyond 8 closed by the server",
        () => sockets.filter((s) => s.destroyed || s.readableEnded).length >= 4,
        5000,
      );
      await sleep(100);
      // 8 per address (the harness's own keep-alive connections may hold some of them).
      const open = sockets.filter((s) => !s.destroyed && !s.readableEnded).length;
      expect(open).toBeGreaterThan(0);
      expect(open).toBeLessThanOrEqual(8);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await sleep(100);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });
});
