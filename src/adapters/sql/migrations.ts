import type { Knex } from "knex";
import { DEFAULT_PARTITION, PARTITION_MS, dayStart, prepareUsagePartitions } from "./usage-partitions.js";
import { createWebhookTables, dropWebhookTables } from "./webhook-store.js";

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
  {
    name: "0004_admin_rules",
    async up(knex) {
      // How many live keys an account on the plan may hold (an operator changes it per plan).
      await knex.schema.alterTable("plans", (t) => {
        t.integer("max_keys").notNullable().defaultTo(100);
      });
      await knex("plans").where({ id: "basic" }).update({ max_keys: 10 });
      await knex("plans").where({ id: "scale" }).update({ max_keys: 1000 });
      // Top-ups now claim their idempotency key in the same transaction as the credit; a claim left without a
      // top-up by the old two-step code never credited anything, so dropping it lets a retry go through.
      await knex("admin_top_ups").whereNull("top_up_id").delete();
      // Server-side secrets created once per database (e.g. the page-token signing key); never shown by any API.
      await knex.schema.createTable("settings", (t) => {
        t.string("name", 64).primary();
        t.text("value").notNullable();
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists("settings");
      await knex.schema.alterTable("plans", (t) => t.dropColumn("max_keys"));
    },
  },
  {
    name: "0005_coordination",
    async up(knex) {
      // Facts processes sharing the database agree on: the single-admission lease without Redis, the Redis epoch.
      await knex.schema.createTable("coordination", (t) => {
        t.string("name", 200).primary();
        t.string("holder", 200).nullable();
        t.text("value").nullable();
        t.bigInteger("heartbeat_at").notNullable();
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists("coordination");
    },
  },
  {
    name: "0006_key_override_setters",
    async up(knex) {
      // Who set each per-key override: "operator" (stands as set, above the plan if so chosen) or "account" (only
      // narrows the plan in force at admission). Existing overrides stay null, which counts as the account's: they
      // can no longer exceed the plan until an operator sets them again.
      await knex.schema.alterTable("api_keys", (t) => {
        t.string("requests_per_minute_set_by", 16).nullable();
        t.string("tokens_per_minute_set_by", 16).nullable();
        t.string("allowed_models_set_by", 16).nullable();
      });
    },
    async down(knex) {
      await knex.schema.alterTable("api_keys", (t) => {
        t.dropColumn("requests_per_minute_set_by");
        t.dropColumn("tokens_per_minute_set_by");
        t.dropColumn("allowed_models_set_by");
      });
    },
  },
  {
    name: "0007_handed_over_reservations",
    async up(knex) {
      // Without Redis: the open credit reservations an authz process held when it released the single-admission
      // lease, taken over by the next one (their requests may still be running behind Envoy).
      await knex.schema.createTable("handed_over_reservations", (t) => {
        t.string("decision_id", 100).primary();
        t.string("account_id", 100).notNullable();
        t.bigInteger("amount").notNullable();
        t.bigInteger("expires_at").notNullable();
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists("handed_over_reservations");
    },
  },
  {
    name: "0009_usage_limits",
    async up(knex) {
      // Expected output (what TPM counts for a request without max_tokens until the meter settles it), daily quotas
      // (RPD/TPD, UTC days) and a concurrency limit, per plan and per key (null: none, or the plan's).
      await knex.schema.alterTable("plans", (t) => {
        t.integer("expected_output_tokens").nullable();
        t.integer("requests_per_day").nullable();
        t.bigInteger("tokens_per_day").nullable();
        t.integer("max_concurrency").nullable();
      });
      await knex.schema.alterTable("models", (t) => {
        t.integer("expected_output_tokens").nullable();
      });
      await knex.schema.alterTable("api_keys", (t) => {
        t.integer("requests_per_day").nullable();
        t.bigInteger("tokens_per_day").nullable();
        t.integer("max_concurrency").nullable();
        t.string("requests_per_day_set_by", 16).nullable();
        t.string("tokens_per_day_set_by", 16).nullable();
        t.string("max_concurrency_set_by", 16).nullable();
      });
    },
    async down(knex) {
      await knex.schema.alterTable("api_keys", (t) => {
        for (const c of ["requests_per_day", "tokens_per_day", "max_concurrency"]) {
          t.dropColumn(c);
          t.dropColumn(`${c}_set_by`);
        }
      });
      await knex.schema.alterTable("models", (t) => t.dropColumn("expected_output_tokens"));
      await knex.schema.alterTable("plans", (t) => {
        for (const c of ["expected_output_tokens", "requests_per_day", "tokens_per_day", "max_concurrency"])
          t.dropColumn(c);
      });
    },
  },
  {
    name: "0008_spend_caps",
    async up(knex) {
      // Spend caps (issue 14): an optional budget in nano-USD per period on a key and on an account, and the
      // account's IANA time zone for its periods' boundaries (null: UTC).
      await knex.schema.alterTable("api_keys", (t) => {
        t.bigInteger("budget_nanos").nullable();
        t.string("budget_period", 16).nullable();
        t.string("budget_set_by", 16).nullable();
      });
      await knex.schema.alterTable("accounts", (t) => {
        t.bigInteger("budget_nanos").nullable();
        t.string("budget_period", 16).nullable();
        t.string("time_zone", 64).nullable();
      });
      // What each key and account spent per period ("day:2026-12-01", "week:2026-11-30", "month:2026-12",
      // "lifetime"), kept by the meter in the same transaction as the ledger rows it sums; scope is a key id or an
      // account id.
      await knex.schema.createTable("spend_totals", (t) => {
        t.string("scope_id", 64).notNullable();
        t.string("period", 32).notNullable();
        t.string("account_id", 64).notNullable();
        t.bigInteger("spent").notNullable();
        t.primary(["scope_id", "period"]);
        t.index(["account_id", "period"]);
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists("spend_totals");
      await knex.schema.alterTable("accounts", (t) => {
        for (const c of ["budget_nanos", "budget_period", "time_zone"]) t.dropColumn(c);
      });
      await knex.schema.alterTable("api_keys", (t) => {
        for (const c of ["budget_nanos", "budget_period", "budget_set_by"]) t.dropColumn(c);
      });
    },
  },
  {
    name: "0011_plan_grants",
    async up(knex) {
      // Free credit a plan grants (nano-USD): once at sign-up, and each UTC month (the free part is topped up to it).
      // The free part of a balance is spent before paid credit and never carries the platform fee.
      await knex.schema.alterTable("plans", (t) => {
        t.bigInteger("grant_signup_nanos").notNullable().defaultTo(0);
        t.bigInteger("grant_monthly_nanos").notNullable().defaultTo(0);
      });
      await knex.schema.alterTable("balances", (t) => {
        t.bigInteger("free_balance").notNullable().defaultTo(0);
      });
      // The default Basic plan grants USD 1 a month, so a new free key works without a card (a fresh database gets it
      // from the catalogue file's seed instead).
      await knex("plans").where({ id: "basic" }).update({ grant_monthly_nanos: 1_000_000_000 });
    },
    async down(knex) {
      await knex.schema.alterTable("balances", (t) => t.dropColumn("free_balance"));
      await knex.schema.alterTable("plans", (t) => {
        t.dropColumn("grant_signup_nanos");
        t.dropColumn("grant_monthly_nanos");
      });
    },
  },
  {
    name: "0012_console_sessions",
    async up(knex) {
      // Web console sessions: a short-lived secret (only its sha256 stored) standing for the admin token it was
      // exchanged for; revoking that token or suspending its account ends the session too.
      await knex.schema.createTable("console_sessions", (t) => {
        t.string("id", 64).primary();
        t.string("session_hash", 64).notNullable().unique();
        t.string("admin_token_id", 64).notNullable().references("admin_tokens.id");
        t.bigInteger("created_at").notNullable();
        t.bigInteger("expires_at").notNullable().index();
        t.bigInteger("revoked_at").nullable();
      });
    },
    async down(knex) {
      await knex.schema.dropTableIfExists("console_sessions");
    },
  },
  {
    name: "0010_webhooks",
    // Alerts by webhook: configured endpoints, the outbox of events (written in the transaction of the change that
    // causes them) and one delivery per (event, webhook) that the delivery worker leases, retries and logs.
    up: (knex) => createWebhookTables(knex),
    down: (knex) => dropWebhookTables(knex),
  },
  {
    name: "0012_usage_log_partitions",
    async up(knex) {
      // PostgreSQL: usage_log becomes a table partitioned by day of `time`, so retention drops whole days instead of
      // deleting rows. A partitioned table's unique keys must hold the partition column: (time, decision_id) replaces
      // the decision_id key (exactly-once is the ledger's unique (decision_id, kind); a usage row is written only
      // beside the ledger row that bills it) and serves keyset paging by (time, decision_id). SQLite keeps one table.
      if (knex.client.config.client !== "pg") return;
      const newest = (await knex("usage_log").max({ max: "time" }).first())?.max;
      await knex.raw("alter table usage_log rename to usage_log_unpartitioned");
      await knex.raw("create table usage_log (like usage_log_unpartitioned) partition by range (time)");
      await knex.raw(
        "alter table usage_log add constraint usage_log_time_decision_id_unique unique (time, decision_id)",
      );
      for (const column of ["account_id", "key_id", "model"])
        await knex.raw(`create index usage_log_${column}_time on usage_log (${column}, time)`);
      await knex.raw(`create table ${DEFAULT_PARTITION} partition of usage_log default`);
      if (newest === null || newest === undefined) {
        await knex.raw("drop table usage_log_unpartitioned");
      } else {
        // Existing rows stay where they are, as one partition up to the end of the day of the newest row (or of
        // today); retention deletes its expired rows until the whole partition has expired, then drops it.
        const end = dayStart(Math.max(Number(newest), Date.now())) + PARTITION_MS;
        await knex.raw("alter table usage_log_unpartitioned drop constraint usage_log_pkey");
        await knex.raw("drop index usage_log_time_index");
        await knex.raw(
          `alter table usage_log attach partition usage_log_unpartitioned for values from (minvalue) to (${end})`,
        );
      }
      await prepareUsagePartitions(knex, Date.now());
    },
    async down(knex) {
      if (knex.client.config.client !== "pg") return;
      await knex.raw("alter table usage_log rename to usage_log_partitioned");
      await knex.raw("create table usage_log (like usage_log_partitioned)");
      await knex.raw("insert into usage_log select * from usage_log_partitioned");
      await knex.raw("drop table usage_log_partitioned cascade");
      await knex.raw("alter table usage_log add primary key (decision_id)");
      for (const column of ["account_id", "key_id", "model"])
        await knex.raw(`create index usage_log_${column}_time_index on usage_log (${column}, time)`);
      await knex.raw("create index usage_log_time_index on usage_log (time)");
    },
  },
  {
    name: "0014_free_refunds_handover_keys",
    async up(knex) {
      // How much of an expired-reservation charge came out of the balance's free part: the late settlement's
      // adjustment gives that much back to the free part first (else free credit became paid credit).
      await knex.schema.alterTable("ledger_entries", (t) => {
        t.bigInteger("free_amount").nullable();
      });
      // The key a handed-over reservation was admitted for, so its successor holds it against the key's budget.
      await knex.schema.alterTable("handed_over_reservations", (t) => {
        t.string("key_id", 100).nullable();
      });
    },
    async down(knex) {
      await knex.schema.alterTable("handed_over_reservations", (t) => t.dropColumn("key_id"));
      await knex.schema.alterTable("ledger_entries", (t) => t.dropColumn("free_amount"));
    },
  },
];

/** Migrations compiled into the code (no directory scan), so the built CLI migrates from anywhere. */
export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => migrations,
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration,
};
