import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { migrate, openDatabase } from "../../app/stores.js";
import { createAdminTokenStore, type AdminTokenRecord } from "../../admin/tokens.js";
import type { Config } from "../../config/config.js";
import { AdminTokenSchema, type AdminToken } from "../../gen/tollgate/admin/v1/admin_tokens_pb.js";
import { configFrom, group, parse, required, UsageError, type Handler } from "../cli-kit.js";
import { auditDirect } from "../local-credential.js";
import { printTable, type Output } from "../output.js";
import { AdminApiError, adminToken, withAdmin } from "./admin-api.js";

/** The API's JSON shape of an admin token (its field names; unset times left out), as every CLI resource prints. */
const tokenJson = (t: AdminToken) =>
  toJson(AdminTokenSchema, t, { useProtoFieldName: true, alwaysEmitImplicit: true }) as Record<string, unknown>;

/** A token made on the database (bootstrap) in the message shape the API returns. */
function tokenMessage(t: AdminTokenRecord): AdminToken {
  return create(AdminTokenSchema, {
    id: t.id,
    name: t.name,
    kind: t.kind,
    accountId: t.accountId ?? "",
    createdAt: timestampFromMs(t.createdAt),
  });
}

/**
 * Creates the first operator token straight on the database (migrating if need be), audited as "bootstrap": no
 * token exists yet to call the admin API with. Refused once any operator token exists.
 */
async function bootstrapOperator(config: Config, name: string): Promise<{ token: AdminToken; secret: string }> {
  const db = await openDatabase(config.database.url);
  try {
    const tokens = createAdminTokenStore(db);
    if (await tokens.hasOperator()) {
      throw new AdminApiError(
        "admin tokens are managed by an operator: set TOLLGATE_ADMIN_TOKEN, or run `tollgate serve` on this machine (it writes the local credential)",
        "unauthenticated",
      );
    }
    await migrate(db);
    const { token, secret } = await tokens.create({ kind: "operator" }, name);
    await auditDirect(db, "bootstrap", "tollgate.cli/CreateAdminToken", { admin_token_id: token.id, kind: token.kind });
    return { token: tokenMessage(token), secret };
  } finally {
    await db.close();
  }
}

function showTokens(out: Output, tokens: AdminToken[]): void {
  const when = (t: AdminToken["createdAt"]) => (t ? timestampDate(t).toISOString() : "-");
  out.result(tokens.map(tokenJson), () =>
    printTable(
      tokens.map((t) => ({
        id: t.id,
        name: t.name,
        kind: t.kind,
        account_id: t.accountId || "-",
        created_at: when(t.createdAt),
        revoked_at: when(t.revokedAt),
      })),
    ),
  );
}

/**
 * `tollgate admin-tokens create|list|revoke` through the admin API (AdminTokenService), which checks the caller is
 * an operator and audits with its token. The one exception is bootstrap: `create --operator` with no credential
 * while no operator token exists is made on the database and audited as "bootstrap".
 */
export const adminTokens: Handler = group("admin-tokens", {
  async create(args, out) {
    const { values } = parse(args, {
      operator: { type: "boolean" },
      account: { type: "string" },
      name: { type: "string" },
    });
    if (Boolean(values.operator) === (values.account !== undefined))
      throw new UsageError("pass exactly one of --operator or --account ID");
    const accountId = values.operator ? "" : required(values.account, "--account");
    const name = values.name ?? "";
    const config = configFrom(values);
    const { token, secret } =
      values.operator && !adminToken(config)
        ? await bootstrapOperator(config, name)
        : await withAdmin(values, async (c) => {
            const r = await c.adminTokens.createAdminToken({ operator: Boolean(values.operator), accountId, name });
            return { token: r.token!, secret: r.secret };
          });
    out.result(
      { ...tokenJson(token), secret },
      () =>
        `created ${token.kind} admin token ${token.id}\n\n  ${secret}\n\nThis token is shown once; store it now (TOLLGATE_ADMIN_TOKEN).`,
    );
  },
  async list(args, out) {
    const { values } = parse(args, {});
    showTokens(out, (await withAdmin(values, (c) => c.adminTokens.listAdminTokens({}))).tokens);
  },
  async revoke(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const tokenId = required(positionals[0], "TOKEN_ID");
    const { token } = await withAdmin(values, (c) => c.adminTokens.revokeAdminToken({ tokenId }));
    out.result(tokenJson(token!), () => `revoked admin token ${token!.id}`);
  },
});
