import { formatUsd } from "../../domain/money.js";
import { iso, parse, required, UsageError, withStores, type Handler } from "../cli-kit.js";
import { printTable } from "../output.js";

/** Parses --since/--until: an ISO date or time ("2025-01-31", "2025-01-31T12:00:00Z") or epoch milliseconds. */
export function timeFlag(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms)) throw new UsageError(`${flag} must be an ISO date/time or epoch milliseconds, not "${text}"`);
  return ms;
}

/** `tollgate usage --account ID [--key ID] [--since T] [--until T] [--model M] [--daily]`: the usage log or its daily rollups. */
export const usage: Handler = async (args, out) => {
  const { values } = parse(args, {
    account: { type: "string" },
    key: { type: "string" },
    model: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    daily: { type: "boolean" },
    limit: { type: "string" },
  });
  const limit = values.limit === undefined ? 1000 : Number(values.limit);
  if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer, not "${values.limit}"`);
  const query = {
    accountId: required(values.account, "--account"),
    keyId: values.key,
    model: values.model,
    since: timeFlag(values.since, "--since"),
    until: timeFlag(values.until, "--until"),
    limit,
  };
  if (values.daily) {
    const days = await withStores(values, (s) => s.ledger.daily(query));
    const rows = days.map((d) => ({
      day: d.day, key: d.keyId, model: d.model, requests: d.requests, prompt_tokens: d.promptTokens,
      completion_tokens: d.completionTokens, cached_tokens: d.cachedTokens, reasoning_tokens: d.reasoningTokens,
      cost_usd: formatUsd(d.cost), cost_nanos: d.cost.toString(), estimated_requests: d.estimatedRequests,
    }));
    out.result(rows, () => printTable(rows.map(({ cost_nanos: _n, ...r }) => r)));
    return;
  }
  const found = await withStores(values, (s) => s.ledger.usage(query));
  const rows = found.map((u) => ({
    time: iso(u.time), decision_id: u.decisionId, request_id: u.requestId, key: u.keyId, model: u.model, provider: u.provider,
    status: u.status, prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, cached_tokens: u.cachedTokens,
    reasoning_tokens: u.reasoningTokens, cost_usd: formatUsd(u.cost), cost_nanos: u.cost.toString(), estimated: u.estimated,
    duration_ms: u.durationMs,
  }));
  out.result(rows, () =>
    printTable(rows.map((r) => ({ time: r.time, key: r.key, model: r.model, status: r.status, prompt: r.prompt_tokens, completion: r.completion_tokens, cached: r.cached_tokens, cost_usd: r.cost_usd, estimated: r.estimated ? "yes" : "" }))),
  );
};
