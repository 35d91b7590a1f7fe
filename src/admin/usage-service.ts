import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { big, bool, int } from "../adapters/sql/database.js";
import {
  ExportFormat, ListUsageResponseSchema, SummarizeUsageResponseSchema, UsageAggregateSchema, UsageGrouping, UsageRecordSchema, UsageService,
  type UsageFilter,
} from "../gen/tollgate/admin/v1/usage_pb.js";
import type { Principal } from "./tokens.js";
import { caller, requireAccount } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { afterKeyset, decodePageToken, pageOf, pageSize } from "./page-token.js";
import { exportUsage, selectUsage, type UsageSelection } from "./usage-export.js";
import { id, invalid, time } from "./validate.js";

/**
 * Turns a request's filter into a selection the caller may read: an account token is confined to its account (and
 * defaults to it); an operator may leave account_id empty to mean every account.
 */
export function usageSelection(who: Principal, filter: UsageFilter | undefined, prefix = "filter."): UsageSelection {
  const f = filter ?? ({ accountId: "", keyId: "", model: "" } as UsageFilter);
  const accountId = f.accountId === "" ? (who.kind === "account" ? who.accountId : undefined) : id(f.accountId, `${prefix}account_id`);
  if (accountId) requireAccount(who, accountId);
  const since = time(f.startTime, `${prefix}start_time`);
  const until = time(f.endTime, `${prefix}end_time`);
  if (since !== undefined && until !== undefined && until <= since) throw invalid(`${prefix}end_time`, "must be after start_time");
  return {
    accountId,
    keyId: f.keyId === "" ? undefined : id(f.keyId, `${prefix}key_id`),
    model: f.model === "" ? undefined : id(f.model, `${prefix}model`),
    since,
    until,
  };
}

const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** UsageService: daily aggregates, raw rows (newest first, paged) and streamed exports. */
export function usageService(deps: AdminDeps): ServiceImpl<typeof UsageService> {
  const { knex } = deps.stores.db;
  return {
    async summarizeUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const s = usageSelection(who, req.filter);
      const groups = [...new Set(req.groupBy)].map((g, i) => {
        if (g === UsageGrouping.KEY) return "key_id";
        if (g === UsageGrouping.MODEL) return "model";
        if (g === UsageGrouping.DAY) return "day";
        throw invalid(`group_by[${i}]`, "must be USAGE_GROUPING_KEY, USAGE_GROUPING_MODEL or USAGE_GROUPING_DAY");
      });
      // The daily rollups outlive the raw log; a range is widened to whole UTC days.
      let q = knex("usage_daily");
      if (s.accountId) q = q.where({ account_id: s.accountId });
      if (s.keyId) q = q.andWhere({ key_id: s.keyId });
      if (s.model) q = q.andWhere({ model: s.model });
      if (s.since !== undefined) q = q.andWhere("day", ">=", utcDay(s.since));
      if (s.until !== undefined) q = q.andWhere("day", "<=", utcDay(s.until - 1));
      const sums = ["requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost", "estimated_requests"];
      q = q.select([...groups, ...sums.map((c) => knex.raw("coalesce(sum(??), 0) as ??", [c, c]))]);
      if (groups.length) q = q.groupBy(groups).orderBy(groups);
      const rows: Array<Record<string, unknown>> = await q;
      return create(SummarizeUsageResponseSchema, {
        aggregates: rows.map((r) => create(UsageAggregateSchema, {
          keyId: (r.key_id as string) ?? "", model: (r.model as string) ?? "", day: (r.day as string) ?? "",
          requests: big(r.requests), promptTokens: big(r.prompt_tokens), completionTokens: big(r.completion_tokens),
          cachedTokens: big(r.cached_tokens), reasoningTokens: big(r.reasoning_tokens), costNanoUsd: big(r.cost),
          estimatedRequests: big(r.estimated_requests),
        })),
      });
    },
    async listUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const s = usageSelection(who, req.filter);
      const size = pageSize(req.pageSize);
      const scope = `usage:${JSON.stringify(s)}`;
      const after = decodePageToken(req.pageToken, scope, ["number", "string"]);
      let q = selectUsage(knex("usage_log"), s).orderBy([{ column: "time", order: "desc" }, { column: "decision_id", order: "desc" }]).limit(size + 1);
      const rows: Array<Record<string, unknown>> = await afterKeyset(q, ["time", "decision_id"], after, "desc");
      const { page, nextPageToken } = pageOf(rows, size, scope, (last) => [int(last.time), last.decision_id as string]);
      return create(ListUsageResponseSchema, {
        records: page.map((r) => create(UsageRecordSchema, {
          decisionId: r.decision_id as string, requestId: r.request_id as string, time: timestampFromMs(int(r.time)),
          accountId: r.account_id as string, keyId: r.key_id as string, model: r.model as string, provider: r.provider as string,
          status: int(r.status), promptTokens: big(r.prompt_tokens), completionTokens: big(r.completion_tokens),
          cachedTokens: big(r.cached_tokens), reasoningTokens: big(r.reasoning_tokens), costNanoUsd: big(r.cost),
          estimated: bool(r.estimated), durationMs: big(r.duration_ms),
        })),
        nextPageToken,
      });
    },
    async *exportUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const s = usageSelection(who, req.filter);
      if (req.format !== ExportFormat.UNSPECIFIED && req.format !== ExportFormat.CSV && req.format !== ExportFormat.JSONL) {
        throw invalid("format", "must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_JSONL");
      }
      for await (const chunk of exportUsage(knex, s, req.format === ExportFormat.JSONL ? "jsonl" : "csv")) yield { chunk };
    },
  };
}
