import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AuditEventSchema,
  type AuditService,
  ListAuditEventsResponseSchema,
} from "../gen/tollgate/admin/v1/audit_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";

/** AuditService: protobuf ↔ the audit use case (operators; newest first). */
export function auditService(deps: AdminDeps): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(req, ctx) {
      const { items, nextPageToken } = await deps.ops.audit.list(await caller(deps.authenticate, ctx), req);
      return create(ListAuditEventsResponseSchema, {
        events: items.map((e) =>
          create(AuditEventSchema, {
            id: e.id,
            tokenId: e.tokenId,
            method: e.method,
            targets: e.targets,
            time: timestampFromMs(e.time),
          }),
        ),
        nextPageToken,
      });
    },
  };
}
