import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService } from "../../src/gen/tollgate/admin/v1/catalogue_pb.js";
import { ConsoleSessionService } from "../../src/gen/tollgate/admin/v1/console_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";

/** The header the admin gate requires on every call the session cookie authenticates (its CSRF proof). */
const CONSOLE_HEADER = "x-tollgate-console";

/**
 * Calls go to the admin API on the console's own origin with the session cookie (sent by the browser, never read by
 * script) and the console header. The admin token itself is sent once, at sign-in, and then forgotten.
 */
const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [
    (next) => (req) => {
      req.header.set(CONSOLE_HEADER, "1");
      return next(req);
    },
  ],
  fetch: (input, init) => fetch(input, { ...init, credentials: "same-origin", cache: "no-store" }),
});

const client = <S extends DescService>(service: S): Client<S> => createClient(service, transport);

/** One client per admin service, all over the console's transport. */
export const api = {
  sessions: client(ConsoleSessionService),
  accounts: client(AccountService),
  keys: client(KeyService),
  credits: client(CreditService),
  usage: client(UsageService),
  plans: client(PlanService),
  catalogue: client(CatalogueService),
  audit: client(AuditService),
};

/** Listeners told when a call finds the session gone, so the console returns to sign-in. */
const signedOut = new Set<() => void>();

/** Registers what happens when the session has ended (expired, revoked, token revoked). */
export function onSignedOut(listener: () => void): () => void {
  signedOut.add(listener);
  return () => signedOut.delete(listener);
}

/** A readable message for a failed call; an ended session also sends the console back to sign-in. */
export function errorMessage(error: unknown): string {
  if (error instanceof ConnectError) {
    if (error.code === Code.Unauthenticated) for (const listener of signedOut) listener();
    return error.rawMessage;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Downloads the usage export (GET /export/usage.csv) with the session cookie and the console header: a fetch and
 * a blob, since a plain link could not carry the header the admin gate requires.
 */
export async function downloadUsageCsv(query: Record<string, string>): Promise<void> {
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== ""));
  const res = await fetch(`/export/usage.csv?${params}`, {
    credentials: "same-origin",
    headers: { [CONSOLE_HEADER]: "1" },
  });
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    throw new Error(body.message ?? `export failed (HTTP ${res.status})`);
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = "usage.csv";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
