import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { usageSelection, type UsageFilterInput } from "../app/usage.js";
import { invalidField } from "../domain/errors.js";
import {
  ExportFormat,
  ListUsageResponseSchema,
  SummarizeUsageResponseSchema,
  UsageAggregateSchema,
  UsageGrouping,
  UsageRecordSchema,
  type UsageService,
  type UsageFilter,
} from "../gen/tollgate/admin/v1/usage_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { msOf } from "./views.js";

/** A request's usage filter as the use case takes it (times as epoch ms). */
export function usageFilter(f: UsageFilter | undefined, prefix = "filter."): UsageFilterInput {
  return {
    accountId: f?.accountId ?? "",
    keyId: f?.keyId ?? "",
    model: f?.model ?? "",
    startMs: msOf(f?.startTime, `${prefix}start_time`),
    endMs: msOf(f?.endTime, `${prefix}end_time`),
  };
}

/** UsageService: protobuf ↔ the usage use cases (daily aggregates, raw rows newest first, streamed exports). */
export function usageService(deps: AdminDeps): ServiceImpl<typeof UsageService> {
  const ops = deps.ops.usage;
  return {
    async summarizeUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const groups = req.groupBy.map((g, i) => {
        if (g === UsageGrouping.KEY) return "key_id" as const;
        if (g === UsageGrouping.MODEL) return "model" as const;
        if (g === UsageGrouping.DAY) return "day" as const;
        throw invalidField(`group_by[${i}]`, "must be USAGE_GROUPING_KEY, USAGE_GROUPING_MODEL or USAGE_GROUPING_DAY");
      });
      const rows = await ops.summarize(who, usageFilter(req.filter), groups);
      return create(SummarizeUsageResponseSchema, {
        aggregates: rows.map((r) =>
          create(UsageAggregateSchema, {
            keyId: r.keyId,
            model: r.model,
            day: r.day,
            requests: r.requests,
            promptTokens: r.promptTokens,
            completionTokens: r.completionTokens,
            cachedTokens: r.cachedTokens,
            reasoningTokens: r.reasoningTokens,
            costNanoUsd: r.cost,
            estimatedRequests: r.estimatedRequests,
          }),
        ),
      });
    },
    async listUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const { items, nextPageToken } = await ops.list(who, usageFilter(req.filter), req);
      return create(ListUsageResponseSchema, {
        records: items.map((r) =>
          create(UsageRecordSchema, {
            decisionId: r.decisionId,
            requestId: r.requestId,
            time: timestampFromMs(r.time),
            accountId: r.accountId,
            keyId: r.keyId,
            model: r.model,
            provider: r.provider,
            status: r.status,
            promptTokens: r.promptTokens,
            completionTokens: r.completionTokens,
            cachedTokens: r.cachedTokens,
            reasoningTokens: r.reasoningTokens,
            costNanoUsd: r.cost,
            estimated: r.estimated,
            durationMs: r.durationMs,
          }),
        ),
        nextPageToken,
      });
    },
    async *exportUsage(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const selection = usageSelection(who, usageFilter(req.filter));
      if (
        req.format !== ExportFormat.UNSPECIFIED &&
        req.format !== ExportFormat.CSV &&
        req.format !== ExportFormat.JSONL
      ) {
        throw invalidField("format", "must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_JSONL");
      }
      for await (const chunk of ops.export(selection, req.format === ExportFormat.JSONL ? "jsonl" : "csv"))
        yield { chunk };
    },
  };
}
