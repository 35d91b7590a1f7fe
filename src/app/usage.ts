import type { Principal, UsageAggregateView, UsageRecordView, UsageSelection } from "../domain/admin-store.js";
import { AppError, invalidField } from "../domain/errors.js";
import { formatUsd, nanos } from "../domain/money.js";
import { requireAccount, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";
import { epochMs, id } from "./validate.js";

/** A usage filter as requested: "" means unset; times in epoch ms. */
export interface UsageFilterInput {
  accountId: string;
  keyId: string;
  model: string;
  startMs?: number;
  endMs?: number;
}

/** The most groups one SummarizeUsage answers: a bigger summary is refused (narrow it, or export the rows). */
export const MAX_USAGE_GROUPS = 10_000;

/** Usage use cases: daily aggregates, raw rows (newest first, paged) and streamed exports. */
export type UsageOperations = ReturnType<typeof createUsageOperations>;

/**
 * Turns a request's filter into a selection the caller may read: an account token is confined to its account (and
 * defaults to it); an operator may leave account_id empty to mean every account.
 */
export function usageSelection(who: Principal, f: UsageFilterInput, prefix = "filter."): UsageSelection {
  const accountId =
    f.accountId === "" ? (who.kind === "account" ? who.accountId : undefined) : id(f.accountId, `${prefix}account_id`);
  if (accountId) requireAccount(who, accountId);
  const since = epochMs(f.startMs, `${prefix}start_time`);
  const until = epochMs(f.endMs, `${prefix}end_time`);
  if (since !== undefined && until !== undefined && until <= since)
    throw invalidField(`${prefix}end_time`, "must be after start_time");
  return {
    accountId,
    keyId: f.keyId === "" ? undefined : id(f.keyId, `${prefix}key_id`),
    model: f.model === "" ? undefined : id(f.model, `${prefix}model`),
    since,
    until,
  };
}

const COLUMNS = [
  "time",
  "decision_id",
  "request_id",
  "account_id",
  "key_id",
  "model",
  "provider",
  "status",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "reasoning_tokens",
  "cost_nano_usd",
  "cost_usd",
  "estimated",
  "duration_ms",
] as const;

function exported(r: UsageRecordView): Record<(typeof COLUMNS)[number], string | number | boolean> {
  return {
    time: new Date(r.time).toISOString(),
    decision_id: r.decisionId,
    request_id: r.requestId,
    account_id: r.accountId,
    key_id: r.keyId,
    model: r.model,
    provider: r.provider,
    status: r.status,
    prompt_tokens: Number(r.promptTokens),
    completion_tokens: Number(r.completionTokens),
    cached_tokens: Number(r.cachedTokens),
    reasoning_tokens: Number(r.reasoningTokens),
    cost_nano_usd: r.cost.toString(),
    cost_usd: formatUsd(nanos(r.cost)),
    estimated: r.estimated,
    duration_ms: Number(r.durationMs),
  };
}

function csvCell(value: string | number | boolean): string {
  const s = String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Creates the usage use cases. */
export function createUsageOperations(ctx: AdminContext) {
  const { store } = ctx;
  return {
    async summarize(
      who: Principal,
      filter: UsageFilterInput,
      groups: ReadonlyArray<"key_id" | "model" | "day">,
    ): Promise<UsageAggregateView[]> {
      // One row past the cap is read, so the answer (and the memory it takes) is bounded whatever the range holds.
      const rows = await store.usageAggregates(usageSelection(who, filter), [...new Set(groups)], MAX_USAGE_GROUPS + 1);
      if (rows.length > MAX_USAGE_GROUPS) {
        throw new AppError(
          "failed_precondition",
          `the summary has more than ${MAX_USAGE_GROUPS} groups; narrow the time range, filter by key or model, or group by fewer columns (ExportUsage streams the rows)`,
          "group_by",
        );
      }
      return rows;
    },
    async list(
      who: Principal,
      filter: UsageFilterInput,
      page: { pageSize: number; pageToken: string },
    ): Promise<{ items: UsageRecordView[]; nextPageToken: string }> {
      const s = usageSelection(who, filter);
      const size = pageSize(page.pageSize);
      const scope = `usage:${JSON.stringify(s)}`;
      const before = await ctx.pageTokens.decode(page.pageToken, scope, ["time", "id"] as const);
      const rows = await store.usageRecords(s, { before, limit: size + 1 });
      return pageOf(ctx.pageTokens, rows, size, scope, (last) => [last.time, last.decisionId]);
    },
    /**
     * Streams the selected usage rows, oldest first, as CSV (with a header) or JSON Lines, one chunk per page. Pages
     * are read by keyset, so memory stays constant however many rows the range holds and no transaction stays open.
     */
    async *export(selection: UsageSelection, format: "csv" | "jsonl", batch = 1000): AsyncGenerator<Uint8Array> {
      if (format === "csv") yield Buffer.from(COLUMNS.join(",") + "\n");
      let after: readonly [number, string] | undefined;
      for (;;) {
        const rows = await store.usageExportPage(selection, { after, limit: batch });
        if (rows.length === 0) return;
        let out = "";
        for (const r of rows) {
          const rec = exported(r);
          out += format === "csv" ? COLUMNS.map((c) => csvCell(rec[c])).join(",") + "\n" : JSON.stringify(rec) + "\n";
        }
        yield Buffer.from(out);
        const last = rows[rows.length - 1]!;
        after = [last.time, last.decisionId];
        if (rows.length < batch) return;
      }
    },
  };
}
