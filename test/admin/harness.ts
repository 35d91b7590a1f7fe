import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import type { StoreTarget } from "../support/services.js";

/** A control plane running authz and admin on ephemeral ports, with an operator token and a client factory. */
export interface AdminHarness {
  t: TestPlane;
  url: string;
  operatorToken: string;
  /** Mints an account token for `accountId`. */
  accountToken(accountId: string): Promise<string>;
  /** A Connect (JSON over HTTP/1.1) client of `service` that sends `token`. */
  client<S extends DescService>(service: S, token?: string): Client<S>;
  transport(token?: string): Transport;
  close(): Promise<void>;
}

/** Starts the harness on a store target. */
export async function startAdmin(
  target: StoreTarget,
  options: { pollMs?: number; env?: Record<string, string>; clock?: () => number } = {},
): Promise<AdminHarness> {
  const t = await startTestPlane(target, {
    roles: ["authz", "admin"],
    env: { TOLLGATE_ADMIN_LISTEN: "127.0.0.1:0", ...options.env },
    pollMs: options.pollMs,
    clock: options.clock,
  });
  const url = `http://127.0.0.1:${t.plane.admin!.port}`;
  const tokens = createAdminTokenStore(t.plane.stores.db);
  const operatorToken = (await tokens.create({ kind: "operator" }, "test operator")).secret;
  const transport = (token = operatorToken) =>
    createConnectTransport({
      baseUrl: url,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    });
  return {
    t,
    url,
    operatorToken,
    accountToken: async (accountId) => (await tokens.create({ kind: "account", accountId }, "test account")).secret,
    transport,
    client: (service, token) => createClient(service, transport(token)),
    close: () => t.close(),
  };
}
