import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Principal } from "./tokens.js";

/** Resolves the Authorization header of a call to a principal; Unauthenticated when it cannot. */
export type Authenticate = (authorization: string | null) => Promise<Principal>;

/** Authenticates with bearer admin tokens checked by `verify`. */
export function bearerAuthentication(verify: (token: string) => Promise<Principal | undefined>): Authenticate {
  return async (authorization) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!match) throw new ConnectError("missing bearer admin token (Authorization: Bearer tga_…)", Code.Unauthenticated);
    const principal = await verify(match[1]!);
    if (!principal) throw new ConnectError("admin token is unknown or revoked", Code.Unauthenticated);
    return principal;
  };
}

/** The caller of an RPC. */
export function caller(authenticate: Authenticate, ctx: HandlerContext): Promise<Principal> {
  return authenticate(ctx.requestHeader.get("authorization"));
}

/** Operator-only RPCs (plans, catalogue, account changes, audit). */
export function requireOperator(who: Principal): void {
  if (who.kind !== "operator") throw new ConnectError("this call needs an operator token", Code.PermissionDenied);
}

/** An account token reaches only its own account; operators reach all. */
export function requireAccount(who: Principal, accountId: string): void {
  if (who.kind === "account" && who.accountId !== accountId) {
    throw new ConnectError("this token cannot reach that account", Code.PermissionDenied);
  }
}

/** Whether `who` may see rows of `accountId` (used to answer NotFound, not PermissionDenied, for foreign ids). */
export function canSee(who: Principal, accountId: string): boolean {
  return who.kind === "operator" || who.accountId === accountId;
}
