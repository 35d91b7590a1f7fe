import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Principal } from "../domain/admin-store.js";
import type { Logger } from "../logging.js";
import { toConnectError } from "./errors.js";

/** Resolves a call's credential (see credentialOf) to a principal; Unauthenticated when it cannot. */
export type Authenticate = (authorization: string | null) => Promise<Principal>;

/** The cookie that carries a web console session (HttpOnly, SameSite=Strict; set by ConsoleSessionService). */
export const SESSION_COOKIE = "tollgate_session";

/**
 * A call's credential, in the one form `Authenticate` reads: the Authorization header when there is one (a bearer
 * admin token), else the console session cookie as `Session <secret>`, else null. The gate and every service derive
 * it the same way, so a session is accepted exactly where a bearer token is, and resolves to the same principal.
 */
export function credentialOf(headers: { get(name: string): string | null }): string | null {
  const authorization = headers.get("authorization");
  if (authorization !== null) return authorization;
  const session = sessionCookie(headers.get("cookie"));
  return session === undefined ? null : `Session ${session}`;
}

/** The console session secret in a Cookie header, if any. */
export function sessionCookie(cookie: string | null): string | undefined {
  for (const part of (cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether a credential is a console session (cookie) rather than a bearer token. */
export function isSessionCredential(credential: string | null): boolean {
  return credential?.startsWith("Session ") ?? false;
}

/**
 * Authenticates with bearer admin tokens checked by `verify`. Every failure is a ConnectError: Unauthenticated for
 * a missing or unknown token, PermissionDenied for a suspended account's token, Unavailable when the store is down.
 */
export function bearerAuthentication(
  verify: (token: string) => Promise<Principal | undefined>,
  logger?: Logger,
  verifySession?: (secret: string) => Promise<Principal | undefined>,
): Authenticate {
  return async (authorization) => {
    const session = verifySession && /^Session\s+(\S+)\s*$/.exec(authorization ?? "");
    const match = session || /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!match)
      throw new ConnectError("missing bearer admin token (Authorization: Bearer tga_…)", Code.Unauthenticated);
    let principal: Principal | undefined;
    try {
      principal = await (session ? verifySession! : verify)(match[1]!);
    } catch (error) {
      throw toConnectError(error, logger, "authenticate");
    }
    if (!principal)
      throw new ConnectError(
        session ? "console session has ended; sign in again" : "admin token is unknown or revoked",
        Code.Unauthenticated,
      );
    return principal;
  };
}

/** The caller of an RPC: its bearer token's principal, or its console session's (the same token's). */
export function caller(authenticate: Authenticate, ctx: HandlerContext): Promise<Principal> {
  return authenticate(credentialOf(ctx.requestHeader));
}
