import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { int } from "../adapters/sql/database.js";
import { AuditEventSchema, AuditService, ListAuditEventsResponseSchema } from "../gen/tollgate/admin/v1/audit_pb.js";
import { caller, requireOperator } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { decodePageToken, pageOf, pageSize } from "./page-token.js";
import { invalid } from "./validate.js";

/** AuditService (operators): the admin change log, newest first. */
export function auditService(deps: AdminDeps): ServiceImpl<typeof AuditService> {
  const { knex } = deps.stores.db;
  return {
    async listAuditEvents(req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      const size = pageSize(req.pageSize);
      const after = decodePageToken(req.pageToken, "audit", ["string"]);
      if (after && !/^\d{1,19}$/.test(after[0] as string)) throw invalid("page_token", "is not a page token from this list");
      let q = knex("admin_audit").orderBy("id", "desc").limit(size + 1);
      if (after) q = q.where("id", "<", after[0]!);
      const { page, nextPageToken } = pageOf(await q, size, "audit", (last) => [String(last.id)]);
      return create(ListAuditEventsResponseSchema, {
        events: page.map((r) => create(AuditEventSchema, {
          id: String(r.id), tokenId: r.token_id as string, method: r.method as string, targets: JSON.parse(r.targets as string), time: timestampFromMs(int(r.time)),
        })),
        nextPageToken,
      });
    },
  };
}
