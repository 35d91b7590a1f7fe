import type { AuditEvent, Principal } from "../domain/admin-store.js";
import { requireOperator, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";

/** Audit use cases (operators): the admin change log, newest first. */
export type AuditOperations = ReturnType<typeof createAuditOperations>;

/** Creates the audit use cases. */
export function createAuditOperations(ctx: AdminContext) {
  return {
    async list(
      who: Principal,
      page: { pageSize: number; pageToken: string },
    ): Promise<{ items: AuditEvent[]; nextPageToken: string }> {
      requireOperator(who);
      const size = pageSize(page.pageSize);
      const after = await ctx.pageTokens.decode(page.pageToken, "audit", ["bigint"] as const);
      const rows = await ctx.store.auditEvents({ beforeId: after ? BigInt(after[0]) : undefined, limit: size + 1 });
      return pageOf(ctx.pageTokens, rows, size, "audit", (last) => [last.id]);
    },
  };
}
