import { createAdminTokenStore } from "../../admin/tokens.js";
import { group, iso, parse, required, UsageError, withStores, type Handler } from "../cli-kit.js";
import { printTable } from "../output.js";

/** `tollgate admin-tokens create|list|revoke`: bootstrap admin API tokens straight in the database. */
export const adminTokens: Handler = group("admin-tokens", {
  async create(args, out) {
    const { values } = parse(args, { operator: { type: "boolean" }, account: { type: "string" }, name: { type: "string" } });
    if (Boolean(values.operator) === (values.account !== undefined)) throw new UsageError("pass exactly one of --operator or --account ID");
    const input = values.operator ? ({ kind: "operator" } as const) : ({ kind: "account", accountId: required(values.account, "--account") } as const);
    const { token, secret } = await withStores(values, (s) => createAdminTokenStore(s.db).create(input, values.name ?? ""));
    out.result({ id: token.id, name: token.name, kind: token.kind, account_id: token.accountId, token: secret }, () =>
      `created ${token.kind} admin token ${token.id}\n\n  ${secret}\n\nThis token is shown once; store it now (TOLLGATE_ADMIN_TOKEN).`,
    );
  },
  async list(args, out) {
    const { values } = parse(args, {});
    const tokens = await withStores(values, (s) => createAdminTokenStore(s.db).list());
    const rows = tokens.map((t) => ({ id: t.id, name: t.name, kind: t.kind, account_id: t.accountId, created_at: iso(t.createdAt), revoked_at: iso(t.revokedAt) }));
    out.result(rows, () => printTable(rows.map((r) => ({ ...r, account_id: r.account_id ?? "-", revoked_at: r.revoked_at ?? "-" }))));
  },
  async revoke(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const id = required(positionals[0], "TOKEN_ID");
    const token = await withStores(values, (s) => createAdminTokenStore(s.db).revoke(id));
    out.result({ id: token.id, revoked_at: iso(token.revokedAt) }, () => `revoked admin token ${token.id}`);
  },
});
