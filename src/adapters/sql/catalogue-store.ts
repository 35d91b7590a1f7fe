import { compileSnapshot, type CatalogueModel, type Plan, type Provider } from "../../domain/catalogue.js";
import { picoPerToken } from "../../domain/money.js";
import { big, bool, int, intOrNull, type Database, writeTransaction } from "./database.js";

/** The catalogue store's port is declared with the domain (src/domain/ports.ts); re-exported for its importers. */
export type { CatalogueStore } from "../../domain/ports.js";
import type { CatalogueStore } from "../../domain/ports.js";

/** Creates the SQL catalogue store. */
export function createCatalogueStore(db: Database, clock: () => number = Date.now): CatalogueStore {
  const { knex } = db;
  return {
    async seed(file, source = "default") {
      return writeTransaction(db, async (trx) => {
        // Rows are inserted with ON CONFLICT DO NOTHING, so replicas starting together cannot double-seed.
        if (await trx("catalogue_loads").where({ source }).first()) return false;
        const now = clock();
        await trx("catalogue_loads").insert({ source, loaded_at: now }).onConflict("source").ignore();
        for (const p of file.providers) {
          await trx("providers")
            .insert({ id: p.id, base_path: p.basePath, created_at: now, updated_at: now })
            .onConflict("id")
            .ignore();
        }
        for (const p of file.plans) {
          await trx("plans")
            .insert({
              id: p.id,
              name: p.displayName,
              requests_per_minute: p.requestsPerMinute,
              tokens_per_minute: p.tokensPerMinute,
              tiers: JSON.stringify(p.tiers),
              max_keys: p.maxKeys,
              grant_signup_nanos: (p.grants?.signup ?? 0n).toString(),
              grant_monthly_nanos: (p.grants?.monthly ?? 0n).toString(),
              expected_output_tokens: p.expectedOutputTokens ?? null,
              requests_per_day: p.requestsPerDay ?? null,
              tokens_per_day: p.tokensPerDay ?? null,
              max_concurrency: p.maxConcurrency ?? null,
              created_at: now,
              updated_at: now,
            })
            .onConflict("id")
            .ignore();
        }
        let position = 0;
        for (const m of file.models) {
          await trx("models")
            .insert({
              id: m.id,
              name: m.displayName,
              provider: m.provider,
              upstream_model: m.upstreamModel,
              tier: m.tier,
              price_input: m.prices.input.toString(),
              price_cached_input: m.prices.cachedInput.toString(),
              price_output: m.prices.output.toString(),
              context_window: m.contextWindow,
              max_output_tokens: m.maxOutputTokens,
              expected_output_tokens: m.expectedOutputTokens ?? null,
              position: position++,
              created_at: now,
              updated_at: now,
            })
            .onConflict("id")
            .ignore();
        }
        return true;
      });
    },
    async snapshot() {
      const [providers, plans, models] = await Promise.all([
        knex("providers").select(),
        knex("plans").select(),
        knex("models")
          .select()
          .orderBy([{ column: "position" }, { column: "id" }]),
      ]);
      return compileSnapshot({
        providers: providers.map((r): Provider => ({ id: r.id, basePath: r.base_path })),
        plans: plans
          .filter((r) => !bool(r.retired))
          .map(
            (r): Plan => ({
              id: r.id,
              displayName: r.name,
              requestsPerMinute: int(r.requests_per_minute),
              tokensPerMinute: int(r.tokens_per_minute),
              tiers: JSON.parse(r.tiers),
              expectedOutputTokens: intOrNull(r.expected_output_tokens),
              requestsPerDay: intOrNull(r.requests_per_day),
              tokensPerDay: intOrNull(r.tokens_per_day),
              maxConcurrency: intOrNull(r.max_concurrency),
            }),
          ),
        models: models.map(
          (r): CatalogueModel => ({
            id: r.id,
            displayName: r.name,
            provider: r.provider,
            upstreamModel: r.upstream_model,
            tier: r.tier,
            prices: {
              input: picoPerToken(big(r.price_input)),
              cachedInput: picoPerToken(big(r.price_cached_input)),
              output: picoPerToken(big(r.price_output)),
            },
            contextWindow: int(r.context_window),
            maxOutputTokens: int(r.max_output_tokens),
            expectedOutputTokens: intOrNull(r.expected_output_tokens),
            retired: bool(r.retired),
          }),
        ),
      });
    },
    async version() {
      const rows = await Promise.all(
        ["providers", "plans", "models"].map((t) => knex(t).max({ v: "updated_at" }).first()),
      );
      return Math.max(0, ...rows.map((r) => (r?.v == null ? 0 : int(r.v))));
    },
  };
}
