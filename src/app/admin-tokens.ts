import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { AdminRepository, AdminTokenRecord, Principal } from "../domain/admin-store.js";
import { newId } from "../domain/api-key.js";
import { denied, NotFoundError } from "../domain/errors.js";
import { audit, requireOperator, type AdminContext } from "./admin-context.js";
import { id, optionalText } from "./validate.js";

/** Every admin token starts with this, so scanners (and people) tell it apart from a data-plane key (tg_). */
export const ADMIN_TOKEN_PREFIX = "tga_";
const RANDOM_LENGTH = 40;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const M = "tollgate.admin.v1.AdminTokenService/";

/** Hashes an admin token for storage (sha256, hex): tokens carry ~238 random bits, so no slow hash is needed. */
export function hashAdminToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** A new secret: `prefix` + 40 random base62 characters (about 238 bits), drawn without modulo bias. */
export function mintSecret(prefix: string): string {
  let random = "";
  while (random.length < RANDOM_LENGTH) {
    for (const byte of randomBytes(64)) if (byte < 248 && random.length < RANDOM_LENGTH) random += BASE62[byte % 62];
  }
  return prefix + random;
}

/** Whether `presented` has the shape of a secret minted with `prefix` (checked before any lookup). */
export function hasSecretShape(presented: string, prefix: string): boolean {
  return presented.startsWith(prefix) && presented.length === prefix.length + RANDOM_LENGTH;
}

/**
 * The principal a presented token stands for, or undefined when it is unknown, revoked or malformed. An account
 * token of a suspended account is refused (PermissionDenied): suspension stops its keys and its tokens.
 */
export async function verifyAdminToken(store: AdminRepository, presented: string): Promise<Principal | undefined> {
  if (!hasSecretShape(presented, ADMIN_TOKEN_PREFIX)) return undefined;
  const hash = hashAdminToken(presented);
  const row = await store.adminTokenByHash(hash);
  // The index finds the row; the stored hash is still compared in constant time before it is trusted.
  if (!row || !timingSafeEqual(Buffer.from(row.tokenHash), Buffer.from(hash))) return undefined;
  return principalOfToken(store, row);
}

/**
 * The principal an admin token record stands for: undefined when it is revoked or its account is gone,
 * PermissionDenied when its account is suspended. Tokens and the console sessions made from them share it.
 */
export async function principalOfToken(store: AdminRepository, row: AdminTokenRecord): Promise<Principal | undefined> {
  if (row.revokedAt !== null) return undefined;
  if (row.kind === "operator") return { kind: "operator", tokenId: row.id };
  const account = await store.account(row.accountId!);
  if (!account) return undefined;
  if (account.suspended)
    throw denied(
      `account "${account.id}" is suspended: its admin tokens and keys are refused until an operator reinstates it`,
    );
  return { kind: "account", tokenId: row.id, accountId: account.id };
}

/** A new admin token: its record, its secret (shown once) and the hash that is stored. */
export function newAdminToken(
  input: { kind: "operator" } | { kind: "account"; accountId: string },
  name: string,
  now: number,
): { token: AdminTokenRecord; secret: string; tokenHash: string } {
  const secret = mintSecret(ADMIN_TOKEN_PREFIX);
  const token: AdminTokenRecord = {
    id: newId("atok"),
    name,
    kind: input.kind,
    accountId: input.kind === "account" ? input.accountId : null,
    createdAt: now,
    revokedAt: null,
  };
  return { token, secret, tokenHash: hashAdminToken(secret) };
}

/** Admin token use cases: operators issue, list and revoke; every call is verified here. */
export type AdminTokenOperations = ReturnType<typeof createAdminTokenOperations>;

/** Creates the admin token use cases. */
export function createAdminTokenOperations(ctx: AdminContext) {
  const { store } = ctx;
  return {
    /** Issues a token (operators only); the secret is returned once and only its hash is stored. */
    async issue(
      who: Principal,
      input: { kind: "operator" } | { kind: "account"; accountId: string },
      name = "",
    ): Promise<{ token: AdminTokenRecord; secret: string }> {
      requireOperator(who, "only an operator may issue admin tokens");
      const label = optionalText(name, "name");
      const accountId = input.kind === "account" ? id(input.accountId, "account_id") : null;
      const { token, secret, tokenHash } = newAdminToken(
        accountId === null ? { kind: "operator" } : { kind: "account", accountId },
        label,
        ctx.clock(),
      );
      await store.transaction(async (tx) => {
        if (accountId !== null && !(await tx.account(accountId)))
          throw new NotFoundError(`account "${accountId}" does not exist`);
        await tx.insertAdminToken({ ...token, tokenHash });
        await audit(ctx, tx, who, M + "CreateAdminToken", {
          admin_token_id: token.id,
          ...(accountId ? { account_id: accountId } : {}),
        });
      });
      return { token, secret };
    },
    async list(who: Principal): Promise<AdminTokenRecord[]> {
      requireOperator(who);
      return store.adminTokens();
    },
    async revoke(who: Principal, tokenId: string): Promise<AdminTokenRecord> {
      requireOperator(who, "only an operator may revoke admin tokens");
      return store.transaction(async (tx) => {
        const token = await tx.revokeAdminToken(id(tokenId, "token_id"), ctx.clock());
        if (!token) throw new NotFoundError(`admin token "${tokenId}" does not exist`);
        await audit(ctx, tx, who, M + "RevokeAdminToken", { admin_token_id: token.id });
        return token;
      });
    },
    /** The principal a presented token stands for (see verifyAdminToken). */
    verify: (presented: string) => verifyAdminToken(store, presented),
  };
}
