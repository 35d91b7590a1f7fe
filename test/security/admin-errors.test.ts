import net from "node:net";
import { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guarded, toConnectError } from "../../src/admin/errors.js";
import { AppError, StoreUnavailableError } from "../../src/domain/errors.js";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { createLogger } from "../../src/logging.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { describeWith, postgresTarget } from "../support/services.js";
import { refused } from "./admin-support.js";

function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: "debug",
    destination: new Writable({ write: (chunk, _e, done) => (lines.push(JSON.parse(String(chunk))), done()) }),
  });
  return { logger, lines };
}

/** Issue 11 item 10: every Internal is logged with a request id (and the client gets only that id). */
describe("admin errors", () => {
  it("answers a fault Internal with a request id, logs it at error level with the same id, and leaks no driver text", async () => {
    const { logger, lines } = capturedLogger();
    const impl = guarded(
      {
        async getThing() {
          throw new Error('relation "accounts" does not exist: select * from accounts');
        },
      },
      "tollgate.admin.v1.Test",
      logger,
    );
    const error = await impl.getThing().then(
      () => undefined,
      (e: unknown) => e as ConnectError,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect(error!.code).toBe(Code.Internal);
    const id = /^internal error \(request id ([0-9a-f-]{36})\)$/.exec(error!.rawMessage)?.[1];
    expect(id, error!.rawMessage).toBeDefined();
    const logged = lines.find((l) => l.requestId === id);
    expect(logged).toMatchObject({ level: 50, method: "tollgate.admin.v1.Test/getThing", msg: "admin call failed" });
    expect(JSON.stringify(logged)).toContain("select * from accounts");
  });

  it("maps every use-case refusal through one table and a store outage to Unavailable", () => {
    expect(toConnectError(new AppError("invalid_argument", "must not be empty", "name"), undefined, "m")).toMatchObject(
      { code: Code.InvalidArgument, rawMessage: "name: must not be empty" },
    );
    expect(toConnectError(new AppError("resource_exhausted", "x", "max_keys"), undefined, "m").code).toBe(
      Code.ResourceExhausted,
    );
    expect(toConnectError(new StoreUnavailableError(new Error("ECONNREFUSED")), undefined, "m").code).toBe(
      Code.Unavailable,
    );
    const passthrough = new ConnectError("no", Code.Unauthenticated);
    expect(toConnectError(passthrough, undefined, "m")).toBe(passthrough);
  });
});

/** A TCP relay to PostgreSQL that the test can cut, so the admin API sees its database become unreachable. */
async function relay(port: number): Promise<{ port: number; cut(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => s.destroy());
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

describeWith("postgres", "admin API with PostgreSQL unreachable", (url) => {
  let h: AdminHarness;
  let cut: () => Promise<void>;
  beforeAll(async () => {
    const target = postgresTarget(url);
    const r = await relay(Number(new URL(url).port || 5432));
    cut = r.cut;
    const relayed = new URL(url);
    relayed.port = String(r.port);
    h = await startAdmin({ ...target, url: relayed.toString() });
  });
  afterAll(() => h?.close().catch(() => {}));

  it("answers Unavailable (retry), not Internal, when the database cannot be reached", {
    timeout: 30_000,
  }, async () => {
    const accounts = h.client(AccountService);
    await accounts.listAccounts({});
    await cut();
    const e = await refused(accounts.listAccounts({}), Code.Unavailable);
    expect(e.rawMessage).not.toMatch(/internal/i);
    await refused(accounts.createAccount({ name: "x", planId: "pro" }), Code.Unavailable);
  });
});
