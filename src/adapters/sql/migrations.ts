import type { Knex } from "knex";

interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/** Timestamps are integer milliseconds since the epoch, written by the application so both dialects compare alike. */
const migrations: Migration[] = [
  {
    name: "0001_foundation",
    async up(knex) {
      await knex.schema.createTable("plans", (t) => {
        t.string("id", 64).primary();
        t.string("name", 200).notNullable();
        t.integer("requests_per_minute").notNullable();
        t.bigInteger("tokens_per_minute").notNullable();
        t.text("tiers").notNullable();
        t.boolean("retired").notNullable().defaultTo(false);
        t.bigInteger("created_at").notNullable();
        t.bigInteger("updated_at").notNullable().index();
      });
      await knex.schema.createTable("providers", (t) => {
        t.string("id", 64).primary();
        t.string("base_path", 200).notNullable();
        t.bigInteger("created_at").notNullable();
        t.bigInteger("updated_at").notNullable().index();
      });
      await knex.schema.createTable("models", (t) => {
        t.string("id", 128).primary();
        t.string("name", 200).notNullable();
        t.string("provider", 64).notNullable().references("providers.id");
        t.string("upstream_model", 200).notNullable();
        t.string("tier", 16).notNullable();
        // Prices in pico-USD per token (exact).
        t.bigInteger("price_input").notNullable();
        t.bigInteger("price_cached_input").notNullable();
        t.bigInteger("price_output").notNullable();
        t.integer("context_window").notNullable();
        t.integer("max_output_tokens").notNullable();
        t.integer("position").notNullable().defaultTo(0);
        t.boolean("retired").notNullable().defaultTo(false);
        t.bigInteger("created_at").notNullable();
        t.bigInteger("updated_at").notNullable().index();
      });
      await knex.schema.createTable("accounts", (t) => {
        t.string("id", 64).primary();
        t.string("name", 200).notNullable();
        t.string("plan_id", 64).notNullable().references("plans.id");
        t.boolean("suspended").notNullable().defaultTo(false);
        t.bigInteger("created_at").notNullable();
        t.bigInteger("updated_at").notNullable().index();
      });
      await knex.schema.createTable("api_keys", (t) => {
        t.string("id", 64).primary();
        t.string("account_id", 64).notNullable().references("accounts.id").index();
        t.string("name", 200).notNullable();
        t.string("display_prefix", 16).notNullable();
        t.string("secret_hash", 64).notNullable().unique();
        t.string("previous_secret_hash", 64).nullable().index();
        t.bigInteger("previous_secret_expires_at").nullable();
        t.bigInteger("expires_at").nullable();
        t.bigInteger("revoked_at").nullable();
        t.text("labels").notNullable().defaultTo("{}");
        t.text("allowed_models").nullable();
        t.integer("requests_per_minute").nullable();
        t.bigInteger("tokens_per_minute").nullable();
        t.bigInteger("last_used_at").nullable();
        t.bigInteger("created_at").notNullable();
        t.bigInteger("updated_at").notNullable().index();
      });
      await knex.schema.createTable("catalogue_loads", (t) => {
        t.string("source", 64).primary();
        t.bigInteger("loaded_at").notNullable();
      });
    },
    async down(knex) {
      for (const table of ["catalogue_loads", "api_keys", "accounts", "models", "providers", "plans"]) {
        await knex.schema.dropTableIfExists(table);
      }
    },
  },
  {
    name: "0002_ledger",
    async up(knex) {
      // Append-only: rows are only ever inserted. `amount` is the signed effect on the credit balance, except for
      // platform_fee rows, which record revenue beside a top-up and never move the balance.
      await knex.schema.createTable("ledger_entries", (t) => {
        t.bigIncrements("id").primary();
        t.string("account_id", 64).notNullable();
        t.string("kind", 32).notNullable();
        t.bigInteger("amount").notNullable();
        // The idempotency key: a decision id for usage, a top-up id for top-ups. One row per (decision, kind).
        t.string("decision_id", 64).notNullable();
        t.boolean("estimated").notNullable().defaultTo(false);
        t.bigInteger("created_at").notNullable();
        t.unique(["decision_id", "kind"]);
        t.index(["account_id", "created_at"]);
      });
      await knex.schema.createTable("balances", (t) => {
        t.string("account_id", 64).primary();
        t.bigInteger("balance").notNullable();
        // Counts committed changes so caches (in-process, Redis) apply each change exactly once.
        t.bigInteger("version").notNullable();
        t.bigInteger("updated_at").notNullable();
      });
      await knex.schema.createTable("usage_log", (t) => {
        t.string("decision_id", 64).primary();
        t.string("request_id", 128).notNullable();
        t.bigInteger("time").notNullable();
        t.string("account_id", 64).notNullable();
        t.string("key_id", 64).notNullable();
        t.string("model", 128).notNullable();
        t.string("provider", 64).notNullable();
        t.integer("status").notNullable();
        t.bigInteger("prompt_tokens").notNullable();
        t.bigInteger("completion_tokens").notNullable();
        t.bigInteger("cached_tokens").notNullable();
        t.bigInteger("reasoning_tokens").notNullable();
        t.bigInteger("cost").notNullable();
        t.boolean("estimated").notNullable();
        t.bigInteger("duration_ms").notNullable();
        t.index(["account_id", "time"]);
        t.index(["key_id", "time"]);
        t.index(["model", "time"]);
        t.index(["time"]);
      });
      // Kept past the usage_log retention: one row per account, key, model and UTC day.
      await knex.schema.createTable("usage_daily", (t) => {
        t.string("account_id", 64).notNullable();
        t.string("key_id", 64).notNullable();
        t.string("model", 128).notNullable();
        t.string("day", 10).notNullable();
        t.bigInteger("requests").notNullable();
        t.bigInteger("prompt_tokens").notNullable();
        t.bigInteger("completion_tokens").notNullable();
        t.bigInteger("cached_tokens").notNullable();
        t.bigInteger("reasoning_tokens").notNullable();
        t.bigInteger("cost").notNullable();
        t.bigInteger("estimated_requests").notNullable();
        t.primary(["account_id", "day", "key_id", "model"]);
      });
      await knex.schema.createTable("dead_letters", (t) => {
        t.bigIncrements("id").primary();
        t.string("source", 8).notNullable();
        t.text("reason").notNullable();
        t.text("payload").notNullable();
        t.bigInteger("received_at").notNullable().index();
      });
    },
    async down(knex) {
      for (const table of ["dead_letters", "usage_daily", "usage_log", "balances", "ledger_entries"]) {
        await knex.schema.dropTableIfExists(table);
      }
    },
  },
  {
    name: "0003_admin",
    async up(knex) {
      // Admin API bearer tokens (tga_…): only the sha256 is stored. An account token is confined to its account.
      await knex.schema.createTable("admin_tokens", (t) => {
        t.string("id", 64).primary();
        t.string("name", 200).notNullable();
        t.string("kind", 16).notNullable();
        t.string("account_id", 64).nullable().references("accounts.id");
        t.string("token_hash", 64).notNullable().unique();
        t.bigInteger("created_at").notNullable();
        t.bigInteger("revoked_at").nullable();
      });
      // Who (token id), what (method + target ids), when. Never a secret.
      await knex.schema.createTable("admin_audit", (t) => {
        t.bigIncrements("id").primary();
        t.string("token_id", 64).notNullable();
        t.string("method", 200).notNullable();
        t.text("targets").notNullable();
        t.bigInteger("time").notNullable().index();
      });
      // Top-up idempotency: the first top-up made with a key is the answer to every retry with it.
      await knex.schema.createTable("admin_top_ups", (t) => {
        t.string("account_id", 64).notNullable();
        t.string("idempotency_key", 200).notNullable();
        t.string("top_up_id", 64).nullable();
        t.bigInteger("amount").notNullable();
        t.bigInteger("fee").nullable();
        t.integer("fee_bps").nullable();
        t.bigInteger("balance").nullable();
        t.bigInteger("created_at").notNullable();
        t.primary(["account_id", "idempotency_key"]);
      });
    },
    async down(knex) {
      for (const table of ["admin_top_ups", "admin_audit", "admin_tokens"]) await knex.schema.dropTableIfExists(table);
    },
  },
];

/** Migrations compiled into the code (no directory scan), so the built CLI migrates from anywhere. */
export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => migrations,
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration,
};
