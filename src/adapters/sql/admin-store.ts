import { randomBytes } from "node:crypto";
import type { Knex } from "knex";
import type {
  AccountView,
  AdminRepository,
  AdminStore,
  AdminTokenRecord,
  AuditEvent,
  ConsoleSessionRecord,
  KeyChanges,
  ModelView,
  PlanView,
  TimeCursor,
  TopUpRecord,
  UsageRecordView,
  UsageSelection,
} from "../../domain/admin-store.js";
import { StoreUnavailableError } from "../../domain/errors.js";
import type { KeyOverride, KeyRecord, OverrideSetter } from "../../domain/keys.js";
import { basisPoints, nanos, type Nanos } from "../../domain/money.js";
import { budgetFromRow } from "./account-store.js";
import { big, bool, int, intOrNull, type Database, writeTransaction } from "./database.js";
import { grantOnSignup } from "./grant-store.js";
import { keyFromRow, SET_BY_COLUMN } from "./key-store.js";
import { isStoreUnavailable } from "./unavailable.js";
import { webhooksPart } from "./webhook-store.js";

type Row = Record<string, unknown>;

const accountView = (r: Row): AccountView => ({
  id: r.id as string,
  name: r.name as string,
  planId: r.plan_id as string,
  suspended: bool(r.suspended),
  budget: budgetFromRow(r),
  timeZone: (r.time_zone as string | null | undefined) ?? null,
  createdAt: int(r.created_at),
  updatedAt: int(r.updated_at),
});

const planView = (r: Row): PlanView => ({
  id: r.id as string,
  name: r.name as string,
  requestsPerMinute: int(r.requests_per_minute),
  tokensPerMinute: big(r.tokens_per_minute),
  tiers: JSON.parse(r.tiers as string) as string[],
  maxKeys: int(r.max_keys),
  expectedOutputTokens: r.expected_output_tokens == null ? null : int(r.expected_output_tokens),
  requestsPerDay: r.requests_per_day == null ? null : int(r.requests_per_day),
  tokensPerDay: r.tokens_per_day == null ? null : big(r.tokens_per_day),
  maxConcurrency: r.max_concurrency == null ? null : int(r.max_concurrency),
  grantSignupNanos: big(r.grant_signup_nanos ?? 0),
  grantMonthlyNanos: big(r.grant_monthly_nanos ?? 0),
  retired: bool(r.retired),
  createdAt: int(r.created_at),
  updatedAt: int(r.updated_at),
});

const modelView = (r: Row): ModelView => ({
  id: r.id as string,
  name: r.name as string,
  provider: r.provider as string,
  upstreamModel: r.upstream_model as string,
  tier: r.tier as string,
  prices: { input: big(r.price_input), cachedInput: big(r.price_cached_input), output: big(r.price_output) },
  contextWindow: int(r.context_window),
  maxOutputTokens: int(r.max_output_tokens),
  expectedOutputTokens: r.expected_output_tokens == null ? null : int(r.expected_output_tokens),
  retired: bool(r.retired),
  createdAt: int(r.created_at),
  updatedAt: int(r.updated_at),
});

const tokenView = (r: Row): AdminTokenRecord & { tokenHash: string } => ({
  id: r.id as string,
  name: r.name as string,
  kind: r.kind as "operator" | "account",
  accountId: (r.account_id as string | null) ?? null,
  createdAt: int(r.created_at),
  revokedAt: intOrNull(r.revoked_at),
  tokenHash: r.token_hash as string,
});

const usageView = (r: Row): UsageRecordView => ({
  decisionId: r.decision_id as string,
  requestId: r.request_id as string,
  time: int(r.time),
  accountId: r.account_id as string,
  keyId: r.key_id as string,
  model: r.model as string,
  provider: r.provider as string,
  status: int(r.status),
  promptTokens: big(r.prompt_tokens),
  completionTokens: big(r.completion_tokens),
  cachedTokens: big(r.cached_tokens),
  reasoningTokens: big(r.reasoning_tokens),
  cost: big(r.cost),
  estimated: bool(r.estimated),
  durationMs: big(r.duration_ms),
});

const topUpRecord = (r: Row): TopUpRecord => ({
  topUpId: r.top_up_id as string,
  accountId: r.account_id as string,
  amount: nanos(big(r.amount)),
  fee: nanos(big(r.fee)),
  feeBps: int(r.fee_bps),
  balance: nanos(big(r.balance)),
});

/** Rows strictly beyond a (time, id) keyset position in the list's order. */
function beyond<Q extends Knex.QueryBuilder>(
  q: Q,
  columns: readonly [string, string],
  cursor: TimeCursor | undefined,
  order: "asc" | "desc",
): Q {
  if (!cursor) return q;
  const [time, id] = columns;
  const op = order === "asc" ? ">" : "<";
  return q.andWhere((w) =>
    w.where(time, op, cursor[0]).orWhere((x) => x.where(time, "=", cursor[0]).andWhere(id, op, cursor[1])),
  ) as Q;
}

function selectUsage(q: Knex.QueryBuilder, s: UsageSelection): Knex.QueryBuilder {
  if (s.accountId) q = q.where({ account_id: s.accountId });
  if (s.keyId) q = q.andWhere({ key_id: s.keyId });
  if (s.model) q = q.andWhere({ model: s.model });
  if (s.since !== undefined) q = q.andWhere("time", ">=", s.since);
  if (s.until !== undefined) q = q.andWhere("time", "<", s.until);
  return q;
}

const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

function keyColumns(c: KeyChanges): Row {
  const out: Row = {};
  if (c.name !== undefined) out.name = c.name;
  if (c.labels !== undefined) out.labels = JSON.stringify(c.labels);
  if (c.allowedModels !== undefined)
    out.allowed_models = c.allowedModels === null ? null : JSON.stringify(c.allowedModels);
  if (c.requestsPerMinute !== undefined) out.requests_per_minute = c.requestsPerMinute;
  if (c.tokensPerMinute !== undefined) out.tokens_per_minute = c.tokensPerMinute;
  if (c.requestsPerDay !== undefined) out.requests_per_day = c.requestsPerDay;
  if (c.tokensPerDay !== undefined) out.tokens_per_day = c.tokensPerDay;
  if (c.maxConcurrency !== undefined) out.max_concurrency = c.maxConcurrency;
  if (c.budget !== undefined) {
    out.budget_nanos = c.budget === null ? null : c.budget.limit.toString();
    out.budget_period = c.budget === null ? null : c.budget.period;
  }
  for (const [field, who] of Object.entries(c.setBy ?? {}) as Array<[KeyOverride, OverrideSetter | null]>)
    out[SET_BY_COLUMN[field]] = who;
  if (c.secretHash !== undefined) out.secret_hash = c.secretHash;
  if (c.displayPrefix !== undefined) out.display_prefix = c.displayPrefix;
  if (c.previousSecretHash !== undefined) out.previous_secret_hash = c.previousSecretHash;
  if (c.previousSecretExpiresAt !== undefined) out.previous_secret_expires_at = c.previousSecretExpiresAt;
  if (c.revokedAt !== undefined) out.revoked_at = c.revokedAt;
  return out;
}

/** The admin repository's methods for accounts. */
function accountsPart(k: Knex | Knex.Transaction, postgres: boolean): Partial<AdminRepository> {
  return {
    async account(id, options = {}) {
      let q = k("accounts").where({ id });
      if (options.forUpdate && postgres) q = q.forUpdate();
      const r = await q.first();
      return r ? accountView(r) : undefined;
    },
    async accounts({ only, after, limit }) {
      let q = k("accounts")
        .orderBy([{ column: "created_at" }, { column: "id" }])
        .limit(limit);
      if (only) q = q.where({ id: only });
      return (await beyond(q, ["created_at", "id"], after, "asc")).map(accountView);
    },
    async insertAccount(a) {
      await k("accounts").insert({
        id: a.id,
        name: a.name,
        plan_id: a.planId,
        suspended: a.suspended,
        created_at: a.createdAt,
        updated_at: a.updatedAt,
      });
    },
    async updateAccount(id, c, now) {
      const row: Row = { updated_at: now };
      if (c.name !== undefined) row.name = c.name;
      if (c.planId !== undefined) row.plan_id = c.planId;
      if (c.suspended !== undefined) row.suspended = c.suspended;
      return (await k("accounts").where({ id }).update(row)) > 0;
    },
    async setAccountBudget(id, { budget, timeZone }, now) {
      const row: Row = { updated_at: now };
      if (budget !== undefined) {
        row.budget_nanos = budget === null ? null : budget.limit.toString();
        row.budget_period = budget === null ? null : budget.period;
      }
      if (timeZone !== undefined) row.time_zone = timeZone;
      return (await k("accounts").where({ id }).update(row)) > 0;
    },
    async spendTotals(accountId, fields) {
      const out = new Map<string, Nanos>();
      if (fields.length === 0) return out;
      const pairs = fields.map((f) => f.split("|") as [string, string]);
      const rows = await k("spend_totals")
        .where({ account_id: accountId })
        .whereIn(
          "period",
          pairs.map(([, period]) => period),
        )
        .select("scope_id", "period", "spent");
      for (const r of rows) {
        const field = `${r.scope_id}|${r.period}`;
        if (fields.includes(field)) out.set(field, nanos(big(r.spent)));
      }
      return out;
    },
    async accountsOnPlan(planId) {
      const r = await k("accounts").where({ plan_id: planId }).count({ n: "*" }).first();
      return int(r?.n ?? 0);
    },
  };
}

/** The admin repository's methods for plans. */
function plansPart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async plan(id) {
      const r = await k("plans").where({ id }).first();
      return r ? planView(r) : undefined;
    },
    async plans(includeRetired) {
      let q = k("plans").orderBy("id");
      if (!includeRetired) q = q.where({ retired: false });
      return (await q).map(planView);
    },
    async insertPlan(p) {
      await k("plans").insert({
        id: p.id,
        name: p.name,
        requests_per_minute: p.requestsPerMinute,
        tokens_per_minute: p.tokensPerMinute,
        tiers: JSON.stringify(p.tiers),
        max_keys: p.maxKeys,
        expected_output_tokens: p.expectedOutputTokens ?? null,
        requests_per_day: p.requestsPerDay ?? null,
        tokens_per_day: p.tokensPerDay ?? null,
        max_concurrency: p.maxConcurrency ?? null,
        grant_signup_nanos: (p.grantSignupNanos ?? 0n).toString(),
        grant_monthly_nanos: (p.grantMonthlyNanos ?? 0n).toString(),
        retired: p.retired,
        created_at: p.createdAt,
        updated_at: p.updatedAt,
      });
    },
    async updatePlan(id, c, now) {
      const row: Row = { updated_at: now };
      if (c.name !== undefined) row.name = c.name;
      if (c.requestsPerMinute !== undefined) row.requests_per_minute = c.requestsPerMinute;
      if (c.tokensPerMinute !== undefined) row.tokens_per_minute = c.tokensPerMinute;
      if (c.tiers !== undefined) row.tiers = JSON.stringify(c.tiers);
      if (c.maxKeys !== undefined) row.max_keys = c.maxKeys;
      if (c.expectedOutputTokens !== undefined) row.expected_output_tokens = c.expectedOutputTokens;
      if (c.requestsPerDay !== undefined) row.requests_per_day = c.requestsPerDay;
      if (c.tokensPerDay !== undefined) row.tokens_per_day = c.tokensPerDay;
      if (c.maxConcurrency !== undefined) row.max_concurrency = c.maxConcurrency;
      if (c.grantSignupNanos !== undefined) row.grant_signup_nanos = c.grantSignupNanos.toString();
      if (c.grantMonthlyNanos !== undefined) row.grant_monthly_nanos = c.grantMonthlyNanos.toString();
      if (c.retired !== undefined) row.retired = c.retired;
      return (await k("plans").where({ id }).update(row)) > 0;
    },
  };
}

/** The admin repository's methods for the catalogue's models and providers. */
function cataloguePart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async catalogueVersion() {
      const rows = await Promise.all(
        ["providers", "plans", "models"].map((t) => k(t).max({ v: "updated_at" }).first()),
      );
      return Math.max(0, ...rows.map((r) => (r?.v == null ? 0 : int(r.v))));
    },
    async model(id) {
      const r = await k("models").where({ id }).first();
      return r ? modelView(r) : undefined;
    },
    async models(includeRetired) {
      let q = k("models").orderBy([{ column: "position" }, { column: "id" }]);
      if (!includeRetired) q = q.where({ retired: false });
      return (await q).map(modelView);
    },
    async modelTiers(ids) {
      if (ids.length === 0) return new Map();
      const rows = await k("models")
        .whereIn("id", [...ids])
        .select("id", "tier");
      return new Map(rows.map((r: Row) => [r.id as string, r.tier as string]));
    },
    async insertModel(m) {
      const position = await k("models").max({ p: "position" }).first();
      await k("models").insert({
        id: m.id,
        name: m.name,
        provider: m.provider,
        upstream_model: m.upstreamModel,
        tier: m.tier,
        price_input: m.prices.input,
        price_cached_input: m.prices.cachedInput,
        price_output: m.prices.output,
        context_window: m.contextWindow,
        max_output_tokens: m.maxOutputTokens,
        expected_output_tokens: m.expectedOutputTokens ?? null,
        position: (position?.p == null ? 0 : int(position.p)) + 1,
        retired: m.retired,
        created_at: m.createdAt,
        updated_at: m.updatedAt,
      });
    },
    async updateModel(id, c, now) {
      const row: Row = { updated_at: now };
      if (c.name !== undefined) row.name = c.name;
      if (c.upstreamModel !== undefined) row.upstream_model = c.upstreamModel;
      if (c.tier !== undefined) row.tier = c.tier;
      if (c.prices !== undefined)
        Object.assign(row, {
          price_input: c.prices.input,
          price_cached_input: c.prices.cachedInput,
          price_output: c.prices.output,
        });
      if (c.contextWindow !== undefined) row.context_window = c.contextWindow;
      if (c.maxOutputTokens !== undefined) row.max_output_tokens = c.maxOutputTokens;
      if (c.expectedOutputTokens !== undefined) row.expected_output_tokens = c.expectedOutputTokens;
      if (c.retired !== undefined) row.retired = c.retired;
      return (await k("models").where({ id }).update(row)) > 0;
    },
    async providers() {
      return (await k("providers").orderBy("id")).map((r: Row) => ({
        id: r.id as string,
        basePath: r.base_path as string,
      }));
    },
  };
}

/** The admin repository's methods for API keys. */
function keysPart(k: Knex | Knex.Transaction, postgres: boolean): Partial<AdminRepository> {
  return {
    async key(id, options = {}) {
      let q = k("api_keys").where({ id });
      if (options.forUpdate && postgres) q = q.forUpdate();
      const r = await q.first();
      return r ? { ...keyFromRow(r), lastUsedAt: intOrNull(r.last_used_at) } : undefined;
    },
    async keys({ accountId, after, limit }) {
      const q = k("api_keys")
        .where({ account_id: accountId })
        .orderBy([{ column: "created_at" }, { column: "id" }])
        .limit(limit);
      return (await beyond(q, ["created_at", "id"], after, "asc")).map((r: Row) => ({
        ...keyFromRow(r),
        lastUsedAt: intOrNull(r.last_used_at),
      }));
    },
    async liveKeys(accountId, now) {
      const r = await k("api_keys")
        .where({ account_id: accountId })
        .whereNull("revoked_at")
        .andWhere((w) => w.whereNull("expires_at").orWhere("expires_at", ">", now))
        .count({ n: "*" })
        .first();
      return int(r?.n ?? 0);
    },
    async insertKey(key: KeyRecord) {
      await k("api_keys").insert({
        id: key.id,
        account_id: key.accountId,
        name: key.name,
        display_prefix: key.displayPrefix,
        secret_hash: key.secretHash,
        previous_secret_hash: key.previousSecretHash,
        previous_secret_expires_at: key.previousSecretExpiresAt,
        expires_at: key.expiresAt,
        revoked_at: key.revokedAt,
        labels: JSON.stringify(key.labels),
        allowed_models: key.allowedModels ? JSON.stringify(key.allowedModels) : null,
        requests_per_minute: key.requestsPerMinute,
        tokens_per_minute: key.tokensPerMinute,
        requests_per_day: key.requestsPerDay ?? null,
        tokens_per_day: key.tokensPerDay ?? null,
        max_concurrency: key.maxConcurrency ?? null,
        budget_nanos: key.budget ? key.budget.limit.toString() : null,
        budget_period: key.budget ? key.budget.period : null,
        created_at: key.createdAt,
        updated_at: key.updatedAt,
        ...Object.fromEntries(
          Object.entries(SET_BY_COLUMN).map(([field, column]) => [column, key.setBy?.[field as KeyOverride] ?? null]),
        ),
      });
    },
    async updateKey(id, changes, now) {
      return (
        (await k("api_keys")
          .where({ id })
          .update({ ...keyColumns(changes), updated_at: now })) > 0
      );
    },
  };
}

/** The admin repository's methods for balances, top-ups and the ledger. */
function creditsPart(k: Knex | Knex.Transaction, postgres: boolean): Partial<AdminRepository> {
  return {
    async balance(accountId) {
      const r = await k("balances").where({ account_id: accountId }).first();
      return r
        ? { balance: nanos(big(r.balance)), version: int(r.version), free: nanos(big(r.free_balance ?? 0)) }
        : { balance: nanos(0n), version: 0, free: nanos(0n) };
    },
    async grantOnSignup(accountId, now) {
      // Always called inside a unit of work (the account's creation).
      return grantOnSignup(k as Knex.Transaction, postgres, accountId, now);
    },
    async topUp({ accountId, idempotencyKey, topUpId, amount, feeBps, maxBalance, now }) {
      const where = { account_id: accountId, idempotency_key: idempotencyKey };
      // The claim and the top-up commit together: a concurrent twin's insert waits on the unique key (PostgreSQL)
      // or for the single writer (SQLite), then finds the finished record; a crash leaves neither.
      const claimed = await k("admin_top_ups")
        .insert({ ...where, top_up_id: topUpId, amount, created_at: now })
        .onConflict(["account_id", "idempotency_key"])
        .ignore()
        .returning("account_id");
      if (claimed.length === 0) {
        const prior = topUpRecord((await k("admin_top_ups").where(where).first())!);
        return { kind: prior.amount === amount ? "replayed" : "key_reused", record: prior };
      }
      await k("balances")
        .insert({ account_id: accountId, balance: 0n, version: 0, updated_at: now })
        .onConflict("account_id")
        .ignore();
      let q = k("balances").where({ account_id: accountId });
      if (postgres) q = q.forUpdate();
      const current = big((await q.first())!.balance);
      if (current + amount > maxBalance) return { kind: "over_cap", balance: nanos(current) };
      const fee = basisPoints(amount, feeBps);
      await k("ledger_entries").insert([
        { account_id: accountId, kind: "top_up", amount, decision_id: topUpId, estimated: false, created_at: now },
        {
          account_id: accountId,
          kind: "platform_fee",
          amount: fee,
          decision_id: topUpId,
          estimated: false,
          created_at: now,
        },
      ]);
      const after = (await k("balances")
        .where({ account_id: accountId })
        .update({ balance: k.raw("balance + ?", [amount.toString()]), version: k.raw("version + 1"), updated_at: now })
        .returning(["balance", "version"])) as Row[];
      const balance = nanos(big(after[0]!.balance));
      await k("admin_top_ups").where(where).update({ fee, fee_bps: feeBps, balance });
      return {
        kind: "applied",
        record: { topUpId, accountId, amount, fee, feeBps, balance },
        change: { accountId, delta: amount as bigint, balance, version: int(after[0]!.version), settled: [] },
      };
    },
    async ledgerEntries({ accountId, beforeId, limit }) {
      let q = k("ledger_entries").where({ account_id: accountId }).orderBy("id", "desc").limit(limit);
      if (beforeId !== undefined) q = q.andWhere("id", "<", beforeId.toString());
      return (await q).map((r: Row) => ({
        id: String(r.id),
        kind: r.kind as string,
        amount: big(r.amount),
        reference: r.decision_id as string,
        estimated: bool(r.estimated),
        createdAt: int(r.created_at),
      }));
    },
  };
}

/** The admin repository's methods for the audit log. */
function auditPart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async insertAudit(e) {
      await k("admin_audit").insert({
        token_id: e.tokenId,
        method: e.method,
        targets: JSON.stringify(e.targets),
        time: e.time,
      });
    },
    async auditEvents({ beforeId, limit }) {
      let q = k("admin_audit").orderBy("id", "desc").limit(limit);
      if (beforeId !== undefined) q = q.where("id", "<", beforeId.toString());
      return (await q).map(
        (r: Row): AuditEvent => ({
          id: String(r.id),
          tokenId: r.token_id as string,
          method: r.method as string,
          targets: JSON.parse(r.targets as string),
          time: int(r.time),
        }),
      );
    },
  };
}

/** The admin repository's methods for admin tokens. */
function tokensPart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async insertAdminToken(t) {
      await k("admin_tokens").insert({
        id: t.id,
        name: t.name,
        kind: t.kind,
        account_id: t.accountId,
        token_hash: t.tokenHash,
        created_at: t.createdAt,
        revoked_at: t.revokedAt,
      });
    },
    async adminTokenByHash(hash) {
      const r = await k("admin_tokens").where({ token_hash: hash }).first();
      return r ? tokenView(r) : undefined;
    },
    async adminTokens() {
      return (await k("admin_tokens").orderBy("created_at")).map((r: Row) => {
        const { tokenHash: _hash, ...token } = tokenView(r);
        return token;
      });
    },
    async revokeAdminToken(id, now) {
      await k("admin_tokens").where({ id }).whereNull("revoked_at").update({ revoked_at: now });
      const r = await k("admin_tokens").where({ id }).first();
      if (!r) return undefined;
      const { tokenHash: _hash, ...token } = tokenView(r);
      return token;
    },
    async hasOperatorToken() {
      try {
        return (await k("admin_tokens").where({ kind: "operator" }).whereNull("revoked_at").first("id")) !== undefined;
      } catch (error) {
        if (await k.schema.hasTable("admin_tokens")) throw error;
        return false;
      }
    },
  };
}

const sessionView = (r: Row): ConsoleSessionRecord & { sessionHash: string } => ({
  id: r.id as string,
  adminTokenId: r.admin_token_id as string,
  createdAt: int(r.created_at),
  expiresAt: int(r.expires_at),
  revokedAt: intOrNull(r.revoked_at),
  sessionHash: r.session_hash as string,
});

/** The admin repository's methods for web console sessions. */
function consoleSessionsPart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async insertConsoleSession(s, now) {
      await k("console_sessions").where("expires_at", "<", now).delete();
      await k("console_sessions").insert({
        id: s.id,
        session_hash: s.sessionHash,
        admin_token_id: s.adminTokenId,
        created_at: s.createdAt,
        expires_at: s.expiresAt,
        revoked_at: s.revokedAt,
      });
    },
    async consoleSessionByHash(hash) {
      const r = await k("console_sessions").where({ session_hash: hash }).first();
      if (!r) return undefined;
      const t = await k("admin_tokens").where({ id: r.admin_token_id }).first();
      return t ? { session: sessionView(r), token: tokenView(t) } : undefined;
    },
    async revokeConsoleSession(hash, now) {
      await k("console_sessions").where({ session_hash: hash }).whereNull("revoked_at").update({ revoked_at: now });
      const r = await k("console_sessions").where({ session_hash: hash }).first();
      if (!r) return undefined;
      const { sessionHash: _hash, ...session } = sessionView(r);
      return session;
    },
  };
}

/** The admin repository's methods for usage rows and rollups. */
function usagePart(k: Knex | Knex.Transaction): Partial<AdminRepository> {
  return {
    async usageAggregates(s, groups, limit) {
      // The daily rollups outlive the raw log; a range is widened to whole UTC days.
      let q = k("usage_daily");
      if (s.accountId) q = q.where({ account_id: s.accountId });
      if (s.keyId) q = q.andWhere({ key_id: s.keyId });
      if (s.model) q = q.andWhere({ model: s.model });
      if (s.since !== undefined) q = q.andWhere("day", ">=", utcDay(s.since));
      if (s.until !== undefined) q = q.andWhere("day", "<=", utcDay(s.until - 1));
      const sums = [
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost",
        "estimated_requests",
      ];
      q = q.select([...groups, ...sums.map((c) => k.raw("coalesce(sum(??), 0) as ??", [c, c]))]);
      if (groups.length)
        q = q
          .groupBy([...groups])
          .orderBy([...groups])
          .limit(limit);
      return ((await q) as Row[]).map((r) => ({
        keyId: (r.key_id as string) ?? "",
        model: (r.model as string) ?? "",
        day: (r.day as string) ?? "",
        requests: big(r.requests),
        promptTokens: big(r.prompt_tokens),
        completionTokens: big(r.completion_tokens),
        cachedTokens: big(r.cached_tokens),
        reasoningTokens: big(r.reasoning_tokens),
        cost: big(r.cost),
        estimatedRequests: big(r.estimated_requests),
      }));
    },
    async usageRecords(s, { before, limit }) {
      const q = selectUsage(k("usage_log"), s)
        .orderBy([
          { column: "time", order: "desc" },
          { column: "decision_id", order: "desc" },
        ])
        .limit(limit);
      return ((await beyond(q, ["time", "decision_id"], before, "desc")) as Row[]).map(usageView);
    },
    async usageExportPage(s, { after, limit }) {
      const q = selectUsage(k("usage_log"), s)
        .orderBy([{ column: "time" }, { column: "decision_id" }])
        .limit(limit);
      return ((await beyond(q, ["time", "decision_id"], after, "asc")) as Row[]).map(usageView);
    },
  };
}

/** The admin repository's methods for server-side secrets. */
function settingsPart(k: Knex | Knex.Transaction, secrets: Map<string, Buffer>): Partial<AdminRepository> {
  return {
    async secret(name) {
      const cached = secrets.get(name);
      if (cached) return cached;
      await k("settings")
        .insert({ name, value: randomBytes(32).toString("base64") })
        .onConflict("name")
        .ignore();
      const value = Buffer.from((await k("settings").where({ name }).first())!.value as string, "base64");
      secrets.set(name, value);
      return value;
    },
  };
}

/** The admin repository over one connection or transaction, assembled from one part per concept. */
function repository(k: Knex | Knex.Transaction, db: Database, secrets: Map<string, Buffer>): AdminRepository {
  const postgres = db.dialect === "postgres";
  return Object.assign(
    {},
    accountsPart(k, postgres),
    plansPart(k),
    cataloguePart(k),
    keysPart(k, postgres),
    creditsPart(k, postgres),
    auditPart(k),
    tokensPart(k),
    consoleSessionsPart(k),
    usagePart(k),
    settingsPart(k, secrets),
    webhooksPart(k),
  ) as AdminRepository;
}

/** Rethrows "the database cannot be reached" as StoreUnavailableError, so the edge answers Unavailable, not Internal. */
function translated<T extends object>(target: T): T {
  const out = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(target)) {
    out[name] =
      typeof fn !== "function"
        ? fn
        : async (...args: unknown[]) => {
            try {
              return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
            } catch (error) {
              throw isStoreUnavailable(error) ? new StoreUnavailableError(error) : error;
            }
          };
  }
  return out as T;
}

/** Creates the SQL admin store: every admin read and write, and units of work as SQL transactions. */
export function createSqlAdminStore(db: Database): AdminStore {
  const secrets = new Map<string, Buffer>();
  const store: AdminStore = {
    ...repository(db.knex, db, secrets),
    transaction: (fn) => writeTransaction(db, async (trx) => fn(translated(repository(trx, db, secrets)))),
    async ping() {
      await db.knex.raw("select 1");
    },
  };
  return translated(store);
}
