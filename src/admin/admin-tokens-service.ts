import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminTokenRecord } from "../domain/admin-store.js";
import { invalidField } from "../domain/errors.js";
import { AdminTokenSchema, type AdminTokenService, type AdminToken } from "../gen/tollgate/admin/v1/admin_tokens_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { ts } from "./views.js";

/** An admin token as the API shows it: never the secret or its hash. */
function tokenMessage(t: AdminTokenRecord): AdminToken {
  return create(AdminTokenSchema, {
    id: t.id,
    name: t.name,
    kind: t.kind,
    accountId: t.accountId ?? "",
    createdAt: ts(t.createdAt),
    revokedAt: ts(t.revokedAt),
  });
}

/** AdminTokenService: protobuf ↔ the admin-token use cases (operators). */
export function adminTokenService(deps: AdminDeps): ServiceImpl<typeof AdminTokenService> {
  const ops = deps.ops.tokens;
  return {
    async createAdminToken(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      if (req.operator === (req.accountId !== ""))
        throw invalidField("operator", "set exactly one of operator or account_id");
      const issued = await ops.issue(
        who,
        req.operator ? { kind: "operator" } : { kind: "account", accountId: req.accountId },
        req.name,
      );
      return { token: tokenMessage(issued.token), secret: issued.secret };
    },
    async listAdminTokens(_req, ctx) {
      return { tokens: (await ops.list(await caller(deps.authenticate, ctx))).map(tokenMessage) };
    },
    async revokeAdminToken(req, ctx) {
      return { token: tokenMessage(await ops.revoke(await caller(deps.authenticate, ctx), req.tokenId)) };
    },
  };
}
