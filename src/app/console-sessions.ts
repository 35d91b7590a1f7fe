import { timingSafeEqual } from "node:crypto";
import type { ConsoleSessionRecord, Principal } from "../domain/admin-store.js";
import { newId } from "../domain/api-key.js";
import { audit, type AdminContext } from "./admin-context.js";
import { hasSecretShape, hashAdminToken, mintSecret, principalOfToken } from "./admin-tokens.js";

/** Every console session secret starts with this, so it is told apart from an admin token (tga_) or a key (tg_). */
export const CONSOLE_SESSION_PREFIX = "tgs_";
/** How long a console session lasts when the config does not say (admin.console_session_ttl_ms). */
export const DEFAULT_CONSOLE_SESSION_TTL_MS = 60 * 60 * 1000;
const M = "tollgate.admin.v1.ConsoleSessionService/";

/** A session as the console learns it at sign-in: the secret goes only into the cookie. */
export interface IssuedConsoleSession {
  secret: string;
  session: ConsoleSessionRecord;
  principal: Principal;
}

/** Console session use cases: exchange an admin token's principal for a session, resolve one, end one. */
export type ConsoleSessionOperations = ReturnType<typeof createConsoleSessionOperations>;

/**
 * Creates the console session use cases. A session stands for the admin token it was made from and is resolved
 * through that token on every call, so it never reaches more than the token: revoking the token or suspending its
 * account ends it at once, and it ends by itself `ttlMs` after sign-in (no renewal: sign in again).
 */
export function createConsoleSessionOperations(ctx: AdminContext, ttlMs = DEFAULT_CONSOLE_SESSION_TTL_MS) {
  const { store } = ctx;
  return {
    /** Issues a session for `who` (an admin token's principal); the audit log records the sign-in. */
    async create(who: Principal): Promise<IssuedConsoleSession> {
      // A sign-in writes a session and an audit row: an account token takes it from its write bucket.
      ctx.writes?.take(who);
      const now = ctx.clock();
      const secret = mintSecret(CONSOLE_SESSION_PREFIX);
      const session: ConsoleSessionRecord = {
        id: newId("sess"),
        adminTokenId: who.tokenId,
        createdAt: now,
        expiresAt: now + ttlMs,
        revokedAt: null,
      };
      await store.transaction(async (tx) => {
        await tx.insertConsoleSession({ ...session, sessionHash: hashAdminToken(secret) }, now);
        await audit(ctx, tx, who, M + "CreateSession", { session_id: session.id });
      });
      return { secret, session, principal: who };
    },
    /** The principal a presented session stands for (its token's), or undefined: unknown, ended, revoked token. */
    async verify(presented: string): Promise<{ principal: Principal; session: ConsoleSessionRecord } | undefined> {
      if (!hasSecretShape(presented, CONSOLE_SESSION_PREFIX)) return undefined;
      const hash = hashAdminToken(presented);
      const found = await store.consoleSessionByHash(hash);
      if (!found || !timingSafeEqual(Buffer.from(found.session.sessionHash), Buffer.from(hash))) return undefined;
      const { sessionHash: _hash, ...session } = found.session;
      if (session.revokedAt !== null || session.expiresAt <= ctx.clock()) return undefined;
      const principal = await principalOfToken(store, found.token);
      return principal && { principal, session };
    },
    /** Ends the presented session (sign-out); a secret that names no session does nothing. */
    async revoke(who: Principal, presented: string): Promise<void> {
      if (!hasSecretShape(presented, CONSOLE_SESSION_PREFIX)) return;
      await store.transaction(async (tx) => {
        const session = await tx.revokeConsoleSession(hashAdminToken(presented), ctx.clock());
        if (session) await audit(ctx, tx, who, M + "DeleteSession", { session_id: session.id });
      });
    },
  };
}
