import type { Knex } from "knex";

/** Inserts `rows` synthetic usage_log rows (one a minute from `start`) and their usage_daily rollups, in batches. */
export async function insertUsage(
  knex: Knex,
  o: { accountId: string; keyId: string; rows: number; start: number; model?: string },
): Promise<void> {
  const model = o.model ?? "gpt-5.5";
  const daily = new Map<string, number>();
  for (let i = 0; i < o.rows; i += 500) {
    const batch = [];
    for (let j = i; j < Math.min(o.rows, i + 500); j++) {
      const time = o.start + j * 60_000;
      const day = new Date(time).toISOString().slice(0, 10);
      daily.set(day, (daily.get(day) ?? 0) + 1);
      batch.push({
        decision_id: `dec_${o.accountId.slice(-6)}_${String(j).padStart(7, "0")}`,
        request_id: `req-${j}`,
        time,
        account_id: o.accountId,
        key_id: o.keyId,
        model,
        provider: "openai",
        status: 200,
        prompt_tokens: 100 + (j % 7),
        completion_tokens: 50,
        cached_tokens: 0,
        reasoning_tokens: 0,
        cost: 1234,
        estimated: false,
        duration_ms: 321,
      });
    }
    await knex.batchInsert("usage_log", batch, 100);
  }
  for (const [day, n] of daily) {
    await knex("usage_daily").insert({
      account_id: o.accountId,
      key_id: o.keyId,
      model,
      day,
      requests: n,
      prompt_tokens: n * 100,
      completion_tokens: n * 50,
      cached_tokens: 0,
      reasoning_tokens: 0,
      cost: n * 1234,
      estimated_requests: 0,
    });
  }
}
