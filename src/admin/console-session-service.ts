import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Principal } from "../domain/admin-store.js";
import {
  type ConsoleSessionService,
  type SessionInfo,
  SessionInfoSchema,
} from "../gen/tollgate/admin/v1/console_pb.js";
import { caller, credentialOf, isSessionCredential, SESSION_COOKIE, sessionCookie } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { ts } from "./views.js";

function sessionInfo(who: Principal, expiresAt: number | null): SessionInfo {
  return create(SessionInfoSchema, {
    kind: who.kind,
    accountId: who.kind === "account" ? who.accountId : "",
    tokenId: who.tokenId,
    expiresAt: ts(expiresAt),
  });
}

/**
 * The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/ (the
 * admin API's paths), Secure when the console was loaded over https. Max-Age=0 clears it.
 */
function cookie(ctx: HandlerContext, value: string, maxAgeSeconds: number): string {
  const secure = ctx.requestHeader.get("origin")?.startsWith("https:") ? "; Secure" : "";
  return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure}`;
}

/** ConsoleSessionService: the web console's sign-in (token → session cookie), who-am-I and sign-out. */
export function consoleSessionService(deps: AdminDeps): ServiceImpl<typeof ConsoleSessionService> {
  const ops = deps.ops.sessions;
  return {
    async createSession(_req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      // A session is made from a token only: a session that could mint sessions would never end.
      if (isSessionCredential(credentialOf(ctx.requestHeader)))
        throw new ConnectError("sign in with an admin token (Authorization: Bearer tga_…)", Code.PermissionDenied);
      const issued = await ops.create(who);
      const maxAge = Math.max(0, Math.floor((issued.session.expiresAt - issued.session.createdAt) / 1000));
      ctx.responseHeader.append("set-cookie", cookie(ctx, issued.secret, maxAge));
      return { session: sessionInfo(who, issued.session.expiresAt) };
    },
    async getSession(_req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const credential = credentialOf(ctx.requestHeader);
      const session = isSessionCredential(credential) ? await ops.verify(credential!.slice(8).trim()) : undefined;
      return { session: sessionInfo(who, session?.session.expiresAt ?? null) };
    },
    async deleteSession(_req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const secret = sessionCookie(ctx.requestHeader.get("cookie"));
      if (secret !== undefined) await ops.revoke(who, secret);
      ctx.responseHeader.append("set-cookie", cookie(ctx, "", 0));
      return {};
    },
  };
}
