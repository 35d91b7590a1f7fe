import type { Knex } from "knex";
import { big, bool, int } from "../adapters/sql/database.js";
import { formatUsd, nanos } from "../domain/money.js";

/** Which usage rows: account (undefined = every account, operators only), key, model, [since, until) in ms. */
export interface UsageSelection {
  accountId?: string;
  keyId?: string;
  model?: string;
  since?: number;
  until?: number;
}

/** Applies a selection to a usage_log query. */
export function selectUsage(q: Knex.QueryBuilder, s: UsageSelection): Knex.QueryBuilder {
  if (s.accountId) q = q.where({ account_id: s.accountId });
  if (s.keyId) q = q.andWhere({ key_id: s.keyId });
  if (s.model) q = q.andWhere({ model: s.model });
  if (s.since !== undefined) q = q.andWhere("time", ">=", s.since);
  if (s.until !== undefined) q = q.andWhere("time", "<", s.until);
  return q;
}

const COLUMNS = [
  "time", "decision_id", "request_id", "account_id", "key_id", "model", "provider", "status", "prompt_tokens",
  "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_nano_usd", "cost_usd", "estimated", "duration_ms",
] as const;

function record(r: Record<string, unknown>): Record<(typeof COLUMNS)[number], string | number | boolean> {
  const cost = big(r.cost);
  return {
    time: new Date(int(r.time)).toISOString(), decision_id: r.decision_id as string, request_id: r.request_id as string,
    account_id: r.account_id as string, key_id: r.key_id as string, model: r.model as string, provider: r.provider as string,
    status: int(r.status), prompt_tokens: int(r.prompt_tokens), completion_tokens: int(r.completion_tokens),
    cached_tokens: int(r.cached_tokens), reasoning_tokens: int(r.reasoning_tokens), cost_nano_usd: cost.toString(),
    cost_usd: formatUsd(nanos(cost)), estimated: bool(r.estimated), duration_ms: int(r.duration_ms),
  };
}

function csvCell(value: string | number | boolean): string {
  const s = String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Streams the selected usage rows, oldest first, as CSV (with a header) or JSON Lines, one chunk per page. Pages
 * are read by keyset ((time, decision_id) > last), so memory stays constant however many rows the range holds and
 * no cursor or transaction is held open between chunks.
 */
export async function* exportUsage(knex: Knex, selection: UsageSelection, format: "csv" | "jsonl", batch = 1000): AsyncGenerator<Uint8Array> {
  if (format === "csv") yield Buffer.from(COLUMNS.join(",") + "\n");
  let after: [number, string] | undefined;
  for (;;) {
    let q = selectUsage(knex("usage_log"), selection).orderBy([{ column: "time" }, { column: "decision_id" }]).limit(batch);
    if (after) {
      const [t, d] = after;
      q = q.andWhere((w) => w.where("time", ">", t).orWhere((x) => x.where("time", "=", t).andWhere("decision_id", ">", d)));
    }
    const rows: Array<Record<string, unknown>> = await q;
    if (rows.length === 0) return;
    let out = "";
    for (const r of rows) {
      const rec = record(r);
      out += format === "csv" ? COLUMNS.map((c) => csvCell(rec[c])).join(",") + "\n" : JSON.stringify(rec) + "\n";
    }
    yield Buffer.from(out);
    const last = rows[rows.length - 1]!;
    after = [int(last.time), last.decision_id as string];
    if (rows.length < batch) return;
  }
}
