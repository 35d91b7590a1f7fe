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
];

/** Migrations compiled into the code (no directory scan), so the built CLI migrates from anywhere. */
export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => migrations,
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration,
};
