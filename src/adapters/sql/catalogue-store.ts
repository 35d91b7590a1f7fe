import type { CatalogueFile } from "../../config/catalogue-file.js";
import { compileSnapshot, type CatalogueModel, type CatalogueSnapshot, type Plan, type Provider } from "../../domain/catalogue.js";
import { picoPerToken } from "../../domain/money.js";
import { big, bool, int, type Database } from "./database.js";

/** Catalogue, plans and providers in SQL, and the compiled snapshot Check reads. */
export interface CatalogueStore {
  /** Inserts the file's rows once per source; later starts keep operators' edits. Returns whether it loaded. */
  seed(file: CatalogueFile, source?: string): Promise<boolean>;
  snapshot(): Promise<CatalogueSnapshot>;
  /** The newest change time over catalogue tables, for cheap change polling. */
  version(): Promise<number>;
}

/** Creates the SQL catalogue store. */
export function createCatalogueStore(db: Database, clock: () => number = Date.now): CatalogueStore {
  const { knex } = db;
  return {
    async seed(file, source = "default") {
      return knex.transaction(async (trx) => {
        // Rows are inserted with ON CONFLICT DO NOTHING, so replicas starting together cannot double-seed.
        if (await trx("catalogue_loads").where({ source }).first()) return false;
        const now = clock();
        await trx("catalogue_loads").insert({ source, loaded_at: now }).onConflict("source").ignore();
        for (const p of file.providers) {
          await trx("providers").insert({ id: p.id, base_path: p.basePath, created_at: now, updated_at: now }).onConflict("id").ignore();
        }
        for (const p of file.plans) {
          await trx("plans")
            .insert({
              id: p.id,
              name: p.displayName,
              requests_per_minute: p.requestsPerMinute,
              tokens_per_minute: p.tokensPerMinute,
              tiers: JSON.stringify(p.tiers),
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
        knex("models").select().orderBy([{ column: "position" }, { column: "id" }]),
      ]);
      return compileSnapshot({
        providers: providers.map((r): Provider => ({ id: r.id, basePath: r.base_path })),
        plans: plans
          .filter((r) => !bool(r.retired))
          .map((r): Plan => ({
            id: r.id,
            displayName: r.name,
            requestsPerMinute: int(r.requests_per_minute),
            tokensPerMinute: int(r.tokens_per_minute),
            tiers: JSON.parse(r.tiers),
          })),
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
