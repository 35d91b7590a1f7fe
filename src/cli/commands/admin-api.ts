import { toJson as protoJson, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  formatUsd,
  formatUsdPerMillionTokens,
  nanos,
  parseUsd,
  parseUsdPerMillionTokens,
  picoPerToken,
} from "../../domain/money.js";
import { AccountService } from "../../gen/tollgate/admin/v1/accounts_pb.js";
import { AdminTokenService } from "../../gen/tollgate/admin/v1/admin_tokens_pb.js";
import { AuditService, ListAuditEventsResponseSchema } from "../../gen/tollgate/admin/v1/audit_pb.js";
import {
  CatalogueService,
  ModelSchema,
  PricesSchema,
  Tier,
  type Model,
} from "../../gen/tollgate/admin/v1/catalogue_pb.js";
import {
  CreditService,
  GetBalanceResponseSchema,
  ListLedgerEntriesResponseSchema,
  TopUpResponseSchema,
} from "../../gen/tollgate/admin/v1/credits_pb.js";
import {
  GetKeyLimitsResponseSchema,
  GetKeySpendResponseSchema,
  KeyService,
  KeySchema,
  type Key,
} from "../../gen/tollgate/admin/v1/keys_pb.js";
import { PlanSchema, PlanService, type Plan } from "../../gen/tollgate/admin/v1/plans_pb.js";
import { AccountSchema, type Account } from "../../gen/tollgate/admin/v1/accounts_pb.js";
import {
  ExportFormat,
  ListUsageResponseSchema,
  SummarizeUsageResponseSchema,
  UsageGrouping,
  UsageService,
  type UsageFilter,
} from "../../gen/tollgate/admin/v1/usage_pb.js";
import { WebhookService } from "../../gen/tollgate/admin/v1/webhooks_pb.js";
import type { Config } from "../../config/config.js";
import { configFrom, durationFlag, group, parse, required, UsageError, type Handler } from "../cli-kit.js";
import { localCredentialPath, readLocalCredential } from "../local-credential.js";
import { printTable, type Output } from "../output.js";
import { amountFlag } from "./credits.js";
import { timeFlag } from "./usage.js";
import { create } from "@bufbuild/protobuf";

/** A failed admin call, carrying the API's code (snake_case) so main.ts prints `{"error":{"code":…}}` with it. */
export class AdminApiError extends Error {
  override name = "AdminApiError";
  constructor(
    message: string,
    readonly cliCode: string,
  ) {
    super(message);
  }
}

/** The admin clients a command uses. */
export interface Clients {
  accounts: Client<typeof AccountService>;
  keys: Client<typeof KeyService>;
  plans: Client<typeof PlanService>;
  catalogue: Client<typeof CatalogueService>;
  credits: Client<typeof CreditService>;
  usage: Client<typeof UsageService>;
  audit: Client<typeof AuditService>;
  adminTokens: Client<typeof AdminTokenService>;
  webhooks: Client<typeof WebhookService>;
}

function clients(transport: Transport): Clients {
  const c = <S extends DescService>(s: S) => createClient(s, transport);
  return {
    accounts: c(AccountService),
    keys: c(KeyService),
    plans: c(PlanService),
    catalogue: c(CatalogueService),
    credits: c(CreditService),
    usage: c(UsageService),
    audit: c(AuditService),
    adminTokens: c(AdminTokenService),
    webhooks: c(WebhookService),
  };
}

/** The admin API the CLI talks to: TOLLGATE_ADMIN_URL, else this machine's admin.listen (default 127.0.0.1:8080). */
export function adminUrl(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  if (env.TOLLGATE_ADMIN_URL) return env.TOLLGATE_ADMIN_URL.replace(/\/+$/, "");
  return `http://${config.admin.listen.replace(/^(0\.0\.0\.0|\[::\])(?=:)/, "127.0.0.1")}`;
}

/** The error every command gives when nothing listens at the admin URL. */
function noServer(url: string): AdminApiError {
  return new AdminApiError(
    `no admin API answers at ${url} (start it with \`npm start\` / \`tollgate serve\`, or set TOLLGATE_ADMIN_URL)`,
    "unavailable",
  );
}

/** Whether a failed call never reached a server (refused, unresolvable, unreachable), as opposed to an API error. */
function unreachable(error: ConnectError): boolean {
  if (error.code !== Code.Unavailable && error.code !== Code.Unknown && error.code !== Code.Internal) return false;
  for (let cause: unknown = error.cause; cause; cause = (cause as { cause?: unknown }).cause) {
    const code = (cause as { code?: unknown }).code;
    if (
      typeof code === "string" &&
      /^(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ECONNRESET)$/.test(code)
    )
      return true;
  }
  return false;
}

/** Whether anything answers /healthz at `url` (to tell "no server" from "no credential"). */
async function answers(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    return true;
  } catch {
    return false;
  }
}

/** The operator or account token the CLI presents: TOLLGATE_ADMIN_TOKEN, else the local credential `serve` wrote. */
export function adminToken(config: Config, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.TOLLGATE_ADMIN_TOKEN || readLocalCredential(config);
}

/**
 * Runs `fn` with admin clients over Connect to the admin API: every management command is an API call, so the
 * server validates, audits (with the caller's token as actor) and invalidates caches the one way it always does.
 */
export async function withAdmin<T>(
  values: { config?: string | undefined },
  fn: (c: Clients) => Promise<T>,
): Promise<T> {
  const config = configFrom(values);
  const url = adminUrl(config);
  const token = adminToken(config);
  if (!token) {
    if (!(await answers(url))) throw noServer(url);
    throw new AdminApiError(
      `no admin credential: set TOLLGATE_ADMIN_TOKEN, or run \`tollgate serve\` on this machine (it writes ${localCredentialPath(config)})`,
      "unauthenticated",
    );
  }
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  try {
    return await fn(clients(transport));
  } catch (error) {
    if (error instanceof ConnectError) {
      if (unreachable(error)) throw noServer(url);
      throw new AdminApiError(
        error.rawMessage,
        Code[error.code].replace(/[A-Z]/g, (m, i) => (i ? "_" : "") + m.toLowerCase()),
      );
    }
    throw error;
  }
}

const json = <D extends DescMessage>(schema: D, message: MessageShape<D>) =>
  protoJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "-");
const labelText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
const TIERS: Record<string, Tier> = { basic: Tier.BASIC, premium: Tier.PREMIUM };
const TIER_NAMES = new Map<Tier, string>([
  [Tier.BASIC, "basic"],
  [Tier.PREMIUM, "premium"],
]);

function intFlag(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)))
    throw new UsageError(`${flag} must be a non-negative integer, not "${text}"`);
  return Number(text);
}
function tiersFlag(text: string | undefined): Tier[] {
  if (text === undefined) return [];
  return text.split(",").map((t) => {
    const tier = TIERS[t.trim()];
    if (tier === undefined) throw new UsageError(`--tiers takes basic and/or premium, not "${t}"`);
    return tier;
  });
}
function priceFlag(text: string | undefined, flag: string): bigint | undefined {
  if (text === undefined) return undefined;
  try {
    return parseUsdPerMillionTokens(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}
function labelsFlag(values: string[] | undefined): Record<string, string> | undefined {
  if (values === undefined) return undefined;
  const labels: Record<string, string> = {};
  for (const label of values) {
    const eq = label.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label must be key=value, not "${label}"`);
    labels[label.slice(0, eq)] = label.slice(eq + 1);
  }
  return labels;
}
const modelsFlag = (text: string | undefined) =>
  text === undefined
    ? undefined
    : text
        .split(",")
        .map((m) => m.trim())
        .filter(Boolean);

/** One JSON shape per resource: `get` prints the object, `list` an array of the same objects. */
const shape = <T>(rows: T[], one: boolean): T | T[] => (one ? rows[0]! : rows);

function showAccounts(out: Output, accounts: Account[], one = false) {
  out.result(
    shape(
      accounts.map((a) => json(AccountSchema, a)),
      one,
    ),
    () => printTable(accounts.map((a) => ({ id: a.id, name: a.name, plan: a.planId, suspended: a.suspended }))),
  );
}
function showKeys(out: Output, keys: Key[], one = false) {
  out.result(
    shape(
      keys.map((k) => json(KeySchema, k)),
      one,
    ),
    () =>
      printTable(
        keys.map((k) => ({
          id: k.id,
          name: k.name,
          prefix: k.displayPrefix + "…",
          labels: labelText(k.labels),
          models: k.allowedModels.join(",") || "(plan)",
          rpm: k.requestsPerMinute || "(plan)",
          tpm: k.tokensPerMinute ? k.tokensPerMinute.toString() : "(plan)",
          rpd: k.requestsPerDay || "(plan)",
          tpd: k.tokensPerDay ? k.tokensPerDay.toString() : "(plan)",
          concurrency: k.maxConcurrency || "(plan)",
          budget: k.budgetNanoUsd ? `${formatUsd(nanos(k.budgetNanoUsd))}/${k.budgetPeriod}` : "-",
          last_used: when(k.lastUsedAt),
          revoked: when(k.revokedAt),
        })),
      ),
  );
}
function showPlans(out: Output, plans: Plan[]) {
  out.result(
    plans.map((p) => json(PlanSchema, p)),
    () =>
      printTable(
        plans.map((p) => ({
          id: p.id,
          name: p.name,
          rpm: p.requestsPerMinute,
          tpm: p.tokensPerMinute.toString(),
          rpd: p.requestsPerDay || "-",
          tpd: p.tokensPerDay ? p.tokensPerDay.toString() : "-",
          concurrency: p.maxConcurrency || "-",
          expected_output: p.expectedOutputTokens || "(default)",
          grant_signup_usd: formatUsd(nanos(p.grantSignupNanoUsd)),
          grant_monthly_usd: formatUsd(nanos(p.grantMonthlyNanoUsd)),
          tiers: p.tiers.map((t) => TIER_NAMES.get(t)).join(","),
          retired: p.retired,
        })),
      ),
  );
}
function showModels(out: Output, models: Model[]) {
  const usd = (p: bigint | undefined) => formatUsdPerMillionTokens(picoPerToken(p ?? 0n));
  out.result(
    models.map((m) => json(ModelSchema, m)),
    () =>
      printTable(
        models.map((m) => ({
          id: m.id,
          provider: m.provider,
          tier: TIER_NAMES.get(m.tier) ?? "",
          input_usd_per_m: usd(m.prices?.inputPicoUsdPerToken),
          cached_usd_per_m: usd(m.prices?.cachedInputPicoUsdPerToken),
          output_usd_per_m: usd(m.prices?.outputPicoUsdPerToken),
          retired: m.retired,
        })),
      ),
  );
}
const shownOnce = "This secret is shown once; store it now.";

/** Follows page tokens to the end of a list: the CLI shows whole lists, the API serves them in pages. */
async function allPages<R>(fetch: (pageToken: string) => Promise<{ rows: R[]; nextPageToken: string }>): Promise<R[]> {
  const rows: R[] = [];
  let pageToken = "";
  do {
    const page = await fetch(pageToken);
    rows.push(...page.rows);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return rows;
}

/** `tollgate accounts …` through the admin API. */
export const accountsApi: Handler = group("accounts", {
  async create(args, out) {
    const { values } = parse(args, { name: { type: "string" }, plan: { type: "string" } });
    const name = required(values.name, "--name");
    const planId = required(values.plan, "--plan");
    const { account } = await withAdmin(values, (c) => c.accounts.createAccount({ name, planId }));
    out.result(
      json(AccountSchema, account!),
      () => `created account ${account!.id} (${account!.name}, plan ${account!.planId})`,
    );
  },
  async list(args, out) {
    const { values } = parse(args, {});
    const all = await withAdmin(values, (c) =>
      allPages(async (pageToken) => {
        const page = await c.accounts.listAccounts({ pageToken, pageSize: 1000 });
        return { rows: page.accounts, nextPageToken: page.nextPageToken };
      }),
    );
    showAccounts(out, all);
  },
  async get(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const accountId = required(positionals[0], "ACCOUNT_ID");
    const { account } = await withAdmin(values, (c) => c.accounts.getAccount({ accountId }));
    showAccounts(out, [account!], true);
  },
  async update(args, out) {
    const { values, positionals } = parse(
      args,
      { name: { type: "string" }, plan: { type: "string" }, suspend: { type: "boolean" }, resume: { type: "boolean" } },
      1,
    );
    const accountId = required(positionals[0], "ACCOUNT_ID");
    if (values.suspend && values.resume) throw new UsageError("--suspend and --resume cannot be combined");
    const suspended = values.suspend ? true : values.resume ? false : undefined;
    const { account } = await withAdmin(values, (c) =>
      c.accounts.updateAccount({ accountId, name: values.name, planId: values.plan, suspended }),
    );
    out.result(
      json(AccountSchema, account!),
      () =>
        `updated account ${account!.id} (${account!.name}, plan ${account!.planId}${account!.suspended ? ", suspended" : ""})`,
    );
  },
  async budget(args, out) {
    const { values, positionals } = parse(args, { ...budgetFlags, "time-zone": { type: "string" } }, 1);
    const accountId = required(positionals[0], "ACCOUNT_ID");
    const budget = budgetValues(values);
    const { account } = await withAdmin(values, (c) =>
      c.accounts.setAccountBudget({ accountId, ...budget, timeZone: values["time-zone"] }),
    );
    const a = account!;
    out.result(
      json(AccountSchema, a),
      () =>
        `account ${a.id}: ${a.budgetNanoUsd ? `budget ${formatUsd(nanos(a.budgetNanoUsd))} USD per ${a.budgetPeriod}` : "no budget"}, periods in ${a.timeZone || "UTC"}`,
    );
  },
});

/** Daily quotas and the concurrency limit, for keys and plans (0 clears one). */
const dailyFlags = {
  rpd: { type: "string" },
  tpd: { type: "string" },
  "max-concurrency": { type: "string" },
} as const;

/** The daily-quota and concurrency flags that were given, as the admin API's fields. */
function dailyValues(values: { rpd?: string; tpd?: string; "max-concurrency"?: string }) {
  const tpd = intFlag(values.tpd, "--tpd");
  return {
    requestsPerDay: intFlag(values.rpd, "--rpd"),
    tokensPerDay: tpd === undefined ? undefined : BigInt(tpd),
    maxConcurrency: intFlag(values["max-concurrency"], "--max-concurrency"),
  };
}

/** The same fields with unset ones as zero (a create request's "not set"). */
function dailyOrZero(v: ReturnType<typeof dailyValues>) {
  return {
    requestsPerDay: v.requestsPerDay ?? 0,
    tokensPerDay: v.tokensPerDay ?? 0n,
    maxConcurrency: v.maxConcurrency ?? 0,
  };
}

/** A spend cap: amount in USD (0 clears) and period, for keys and accounts. */
const budgetFlags = {
  "budget-usd": { type: "string" },
  "budget-period": { type: "string" },
} as const;

/** An amount of USD that may be 0 (which clears), or a usage error naming the flag. */
function usdFlag(text: string | undefined, flag: string): bigint | undefined {
  if (text === undefined) return undefined;
  try {
    return parseUsd(text);
  } catch {
    throw new UsageError(
      `${flag} must be an amount of USD with at most 9 decimals (e.g. 5 or 0.50; 0 clears), not "${text}"`,
    );
  }
}

/** The budget flags that were given, as the admin API's fields (the API validates the period, naming its field). */
function budgetValues(values: { "budget-usd"?: string; "budget-period"?: string }) {
  return { budgetNanoUsd: usdFlag(values["budget-usd"], "--budget-usd"), budgetPeriod: values["budget-period"] };
}

/** `tollgate keys …` through the admin API. */
export const keysApi: Handler = group("keys", {
  async create(args, out) {
    const { values } = parse(args, {
      account: { type: "string" },
      name: { type: "string" },
      "expires-in": { type: "string" },
      models: { type: "string" },
      label: { type: "string", multiple: true },
      rpm: { type: "string" },
      tpm: { type: "string" },
      ...dailyFlags,
      ...budgetFlags,
    });
    const accountId = required(values.account, "--account");
    const budget = budgetValues(values);
    const expiresIn =
      values["expires-in"] === undefined
        ? undefined
        : durationFromMs(durationFlag(values["expires-in"], "--expires-in"));
    const r = await withAdmin(values, (c) =>
      c.keys.createKey({
        accountId,
        name: values.name ?? "",
        labels: labelsFlag(values.label) ?? {},
        allowedModels: modelsFlag(values.models) ?? [],
        requestsPerMinute: intFlag(values.rpm, "--rpm") ?? 0,
        tokensPerMinute: BigInt(intFlag(values.tpm, "--tpm") ?? 0),
        ...dailyOrZero(dailyValues(values)),
        budgetNanoUsd: budget.budgetNanoUsd ?? 0n,
        budgetPeriod: budget.budgetPeriod ?? "",
        expiresIn,
      }),
    );
    out.result(
      { ...(json(KeySchema, r.key!) as object), secret: r.secret },
      () => `created key ${r.key!.id}\n\n  ${r.secret}\n\n${shownOnce}`,
    );
  },
  async list(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = values.account ?? "";
    const keys = await withAdmin(values, (c) =>
      allPages(async (pageToken) => {
        const page = await c.keys.listKeys({ accountId, pageToken, pageSize: 1000 });
        return { rows: page.keys, nextPageToken: page.nextPageToken };
      }),
    );
    showKeys(out, keys);
  },
  async get(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const { key } = await withAdmin(values, (c) => c.keys.getKey({ keyId }));
    showKeys(out, [key!], true);
  },
  async update(args, out) {
    const { values, positionals } = parse(
      args,
      {
        name: { type: "string" },
        rpm: { type: "string" },
        tpm: { type: "string" },
        models: { type: "string" },
        "all-models": { type: "boolean" },
        label: { type: "string", multiple: true },
        ...dailyFlags,
        ...budgetFlags,
      },
      1,
    );
    const keyId = required(positionals[0], "KEY_ID");
    const models = values["all-models"] ? [] : modelsFlag(values.models);
    const labels = labelsFlag(values.label);
    const tpm = intFlag(values.tpm, "--tpm");
    const { key } = await withAdmin(values, (c) =>
      c.keys.updateKey({
        keyId,
        name: values.name,
        requestsPerMinute: intFlag(values.rpm, "--rpm"),
        tokensPerMinute: tpm === undefined ? undefined : BigInt(tpm),
        ...dailyValues(values),
        ...budgetValues(values),
        allowedModels: models === undefined ? undefined : { models },
        labels: labels === undefined ? undefined : { labels },
      }),
    );
    out.result(json(KeySchema, key!), () => `updated key ${key!.id}`);
  },
  async rotate(args, out) {
    const { values, positionals } = parse(args, { grace: { type: "string" } }, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const grace = values.grace === undefined ? undefined : durationFromMs(durationFlag(values.grace, "--grace"));
    const r = await withAdmin(values, (c) => c.keys.rotateKey({ keyId, grace }));
    out.result(
      { ...(json(KeySchema, r.key!) as object), secret: r.secret },
      () =>
        `rotated key ${r.key!.id}${grace ? ` (old secret valid for ${values.grace})` : " (old secret rejected from now on)"}\n\n  ${r.secret}\n\n${shownOnce}`,
    );
  },
  async spend(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const r = await withAdmin(values, (c) => c.keys.getKeySpend({ keyId }));
    const rows = (
      [
        ["key", r.keyBudget],
        ["account", r.accountBudget],
      ] as const
    ).flatMap(([scope, b]) =>
      b
        ? [
            {
              budget: scope,
              limit_usd: formatUsd(nanos(b.limitNanoUsd)),
              period: b.period,
              spent_usd: formatUsd(nanos(b.spentNanoUsd)),
              held_usd: formatUsd(nanos(b.heldNanoUsd)),
              left_usd: formatUsd(nanos(b.limitNanoUsd - b.spentNanoUsd - b.heldNanoUsd)),
              resets: when(b.resetsAt) || "never",
            },
          ]
        : [],
    );
    out.result(json(GetKeySpendResponseSchema, r), () =>
      rows.length ? printTable(rows) : `${keyId}: no budget on the key or its account`,
    );
  },
  async limits(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const r = await withAdmin(values, (c) => c.keys.getKeyLimits({ keyId }));
    const rows = (
      [
        ["requests per minute", r.requestsPerMinute],
        ["tokens per minute", r.tokensPerMinute],
        ["requests per day", r.requestsPerDay],
        ["tokens per day", r.tokensPerDay],
      ] as const
    ).flatMap(
      ([window, w]): Array<{ window: string; limit: string; remaining: string; reset_seconds: number }> =>
        w ? [{ window, limit: String(w.limit), remaining: String(w.remaining), reset_seconds: w.resetSeconds }] : [],
    );
    if (r.maxConcurrency > 0)
      rows.push({
        window: "requests in flight",
        limit: String(r.maxConcurrency),
        remaining: String(Math.max(0, r.maxConcurrency - r.inFlight)),
        reset_seconds: 0,
      });
    const note = r.live ? "" : "\n(this admin process shares no limiter with the data plane: windows read as unused)";
    out.result(json(GetKeyLimitsResponseSchema, r), () => printTable(rows) + note);
  },
  async revoke(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const { key } = await withAdmin(values, (c) => c.keys.revokeKey({ keyId }));
    out.result(json(KeySchema, key!), () => `revoked key ${key!.id}`);
  },
});

const planFlags = {
  name: { type: "string" },
  rpm: { type: "string" },
  tpm: { type: "string" },
  tiers: { type: "string" },
  "expected-output": { type: "string" },
  "grant-signup-usd": { type: "string" },
  "grant-monthly-usd": { type: "string" },
  ...dailyFlags,
} as const;

/** The plan's free-credit flags that were given (USD; 0: none). */
function grantValues(values: { "grant-signup-usd"?: string; "grant-monthly-usd"?: string }) {
  return {
    grantSignupNanoUsd: usdFlag(values["grant-signup-usd"], "--grant-signup-usd"),
    grantMonthlyNanoUsd: usdFlag(values["grant-monthly-usd"], "--grant-monthly-usd"),
  };
}

/** `tollgate plans list|create|update|retire`. */
export const plansApi: Handler = group("plans", {
  async list(args, out) {
    const { values } = parse(args, { all: { type: "boolean" } });
    showPlans(out, (await withAdmin(values, (c) => c.plans.listPlans({ includeRetired: values.all ?? false }))).plans);
  },
  async create(args, out) {
    const { values, positionals } = parse(args, planFlags, 1);
    const id = required(positionals[0], "PLAN_ID");
    const plan = create(PlanSchema, {
      id,
      name: required(values.name, "--name"),
      requestsPerMinute: intFlag(required(values.rpm, "--rpm"), "--rpm"),
      tokensPerMinute: BigInt(intFlag(required(values.tpm, "--tpm"), "--tpm")!),
      tiers: tiersFlag(required(values.tiers, "--tiers")),
      expectedOutputTokens: intFlag(values["expected-output"], "--expected-output") ?? 0,
      ...dailyOrZero(dailyValues(values)),
      grantSignupNanoUsd: grantValues(values).grantSignupNanoUsd ?? 0n,
      grantMonthlyNanoUsd: grantValues(values).grantMonthlyNanoUsd ?? 0n,
    });
    const r = await withAdmin(values, (c) => c.plans.createPlan({ plan }));
    out.result(json(PlanSchema, r.plan!), () => `created plan ${r.plan!.id}`);
  },
  async update(args, out) {
    const { values, positionals } = parse(args, planFlags, 1);
    const planId = required(positionals[0], "PLAN_ID");
    const tpm = intFlag(values.tpm, "--tpm");
    const r = await withAdmin(values, (c) =>
      c.plans.updatePlan({
        planId,
        name: values.name,
        requestsPerMinute: intFlag(values.rpm, "--rpm"),
        tokensPerMinute: tpm === undefined ? undefined : BigInt(tpm),
        tiers: tiersFlag(values.tiers),
        expectedOutputTokens: intFlag(values["expected-output"], "--expected-output"),
        ...dailyValues(values),
        ...grantValues(values),
      }),
    );
    out.result(json(PlanSchema, r.plan!), () => `updated plan ${r.plan!.id}`);
  },
  async retire(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const planId = required(positionals[0], "PLAN_ID");
    const r = await withAdmin(values, (c) => c.plans.retirePlan({ planId }));
    out.result(json(PlanSchema, r.plan!), () => `retired plan ${r.plan!.id}`);
  },
});

const modelFlags = {
  name: { type: "string" },
  provider: { type: "string" },
  upstream: { type: "string" },
  tier: { type: "string" },
  input: { type: "string" },
  "cached-input": { type: "string" },
  output: { type: "string" },
  "context-window": { type: "string" },
  "max-output": { type: "string" },
  "expected-output": { type: "string" },
} as const;

/** `tollgate models list|create|update|retire` (prices in USD per million tokens, stored exactly). */
export const modelsApi: Handler = group("models", {
  async list(args, out) {
    const { values } = parse(args, { all: { type: "boolean" } });
    showModels(
      out,
      (await withAdmin(values, (c) => c.catalogue.listModels({ includeRetired: values.all ?? false }))).models,
    );
  },
  async create(args, out) {
    const { values, positionals } = parse(args, modelFlags, 1);
    const id = required(positionals[0], "MODEL_ID");
    const tier = TIERS[required(values.tier, "--tier")];
    if (tier === undefined) throw new UsageError(`--tier must be basic or premium, not "${values.tier}"`);
    const model = create(ModelSchema, {
      id,
      name: values.name ?? id,
      provider: required(values.provider, "--provider"),
      upstreamModel: values.upstream ?? id,
      tier,
      prices: create(PricesSchema, {
        inputPicoUsdPerToken: priceFlag(required(values.input, "--input"), "--input"),
        cachedInputPicoUsdPerToken: priceFlag(values["cached-input"] ?? values.input, "--cached-input"),
        outputPicoUsdPerToken: priceFlag(required(values.output, "--output"), "--output"),
      }),
      contextWindow: intFlag(required(values["context-window"], "--context-window"), "--context-window"),
      maxOutputTokens: intFlag(required(values["max-output"], "--max-output"), "--max-output"),
      expectedOutputTokens: intFlag(values["expected-output"], "--expected-output") ?? 0,
    });
    const r = await withAdmin(values, (c) => c.catalogue.createModel({ model }));
    out.result(json(ModelSchema, r.model!), () => `created model ${r.model!.id}`);
  },
  async update(args, out) {
    const { values, positionals } = parse(args, modelFlags, 1);
    const modelId = required(positionals[0], "MODEL_ID");
    const tier = values.tier === undefined ? Tier.UNSPECIFIED : TIERS[values.tier];
    if (tier === undefined) throw new UsageError(`--tier must be basic or premium, not "${values.tier}"`);
    const priced = values.input !== undefined || values.output !== undefined || values["cached-input"] !== undefined;
    const r = await withAdmin(values, async (c) => {
      let prices: ReturnType<typeof create<typeof PricesSchema>> | undefined;
      if (priced) {
        // A price flag left out keeps its current value: prices are replaced as a whole on the wire.
        const current = (await c.catalogue.getModel({ modelId })).model!.prices!;
        prices = create(PricesSchema, {
          inputPicoUsdPerToken: priceFlag(values.input, "--input") ?? current.inputPicoUsdPerToken,
          cachedInputPicoUsdPerToken:
            priceFlag(values["cached-input"], "--cached-input") ?? current.cachedInputPicoUsdPerToken,
          outputPicoUsdPerToken: priceFlag(values.output, "--output") ?? current.outputPicoUsdPerToken,
        });
      }
      return c.catalogue.updateModel({
        modelId,
        name: values.name,
        upstreamModel: values.upstream,
        tier,
        prices,
        contextWindow: intFlag(values["context-window"], "--context-window"),
        maxOutputTokens: intFlag(values["max-output"], "--max-output"),
        expectedOutputTokens: intFlag(values["expected-output"], "--expected-output"),
      });
    });
    out.result(json(ModelSchema, r.model!), () => `updated model ${r.model!.id}`);
  },
  async retire(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const modelId = required(positionals[0], "MODEL_ID");
    const r = await withAdmin(values, (c) => c.catalogue.retireModel({ modelId }));
    out.result(json(ModelSchema, r.model!), () => `retired model ${r.model!.id}`);
  },
});

/** `tollgate credits add|balance|ledger` through the admin API. */
export const creditsApi: Handler = group("credits", {
  async add(args, out) {
    const { values } = parse(args, {
      account: { type: "string" },
      amount: { type: "string" },
      "idempotency-key": { type: "string" },
    });
    const accountId = required(values.account, "--account");
    const amount = amountFlag(required(values.amount, "--amount"));
    const idempotencyKey = values["idempotency-key"] ?? `cli-${crypto.randomUUID()}`;
    const r = await withAdmin(values, (c) => c.credits.topUp({ accountId, amountNanoUsd: amount, idempotencyKey }));
    out.result(
      json(TopUpResponseSchema, r),
      () =>
        `added ${formatUsd(nanos(r.creditNanoUsd))} USD to ${accountId} (platform fee ${formatUsd(nanos(r.platformFeeNanoUsd))} USD; customer pays ${formatUsd(nanos(r.chargedNanoUsd))} USD); balance ${formatUsd(nanos(r.balanceNanoUsd))} USD${r.replayed ? " (replayed: this idempotency key was already used)" : ""}`,
    );
  },
  async balance(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = required(values.account, "--account");
    const r = await withAdmin(values, (c) => c.credits.getBalance({ accountId }));
    out.result(
      json(GetBalanceResponseSchema, r),
      () =>
        `${accountId}: ${formatUsd(nanos(r.balanceNanoUsd))} USD${r.freeNanoUsd ? ` (of which ${formatUsd(nanos(r.freeNanoUsd))} USD free credit from the plan, spent first)` : ""}`,
    );
  },
  async ledger(args, out) {
    const { values } = parse(args, { account: { type: "string" }, limit: { type: "string" } });
    const accountId = required(values.account, "--account");
    const r = await withAdmin(values, (c) =>
      c.credits.listLedgerEntries({ accountId, pageSize: intFlag(values.limit, "--limit") ?? 100 }),
    );
    out.result((json(ListLedgerEntriesResponseSchema, r) as { entries: unknown[] }).entries, () =>
      printTable(
        r.entries.map((e) => ({
          id: e.id,
          time: when(e.createdAt),
          kind: e.kind,
          amount_usd: formatUsd(nanos(e.amountNanoUsd)),
          reference: e.reference,
          estimated: e.estimated ? "yes" : "",
        })),
      ),
    );
  },
});

/** `tollgate usage [summary|export] …` through the admin API. */
export const usageApi: Handler = async (args, out) => {
  const sub = args[0] === "summary" || args[0] === "export" ? args[0] : "list";
  const rest = sub === "list" ? args : args.slice(1);
  const { values } = parse(rest, {
    account: { type: "string" },
    key: { type: "string" },
    model: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    limit: { type: "string" },
    daily: { type: "boolean" },
    "group-by": { type: "string" },
    format: { type: "string" },
  });
  const since = timeFlag(values.since, "--since");
  const until = timeFlag(values.until, "--until");
  const filter = {
    accountId: values.account ?? "",
    keyId: values.key ?? "",
    model: values.model ?? "",
    startTime: since === undefined ? undefined : timestampFromMs(since),
    endTime: until === undefined ? undefined : timestampFromMs(until),
  } as UsageFilter;
  if (sub === "summary" || values.daily) {
    const groups = (values["group-by"] ?? (values.daily ? "day,key,model" : ""))
      .split(",")
      .filter(Boolean)
      .map((g) => {
        const grouping = (
          { key: UsageGrouping.KEY, model: UsageGrouping.MODEL, day: UsageGrouping.DAY } as Record<
            string,
            UsageGrouping
          >
        )[g];
        if (grouping === undefined) throw new UsageError(`--group-by takes key, model and/or day, not "${g}"`);
        return grouping;
      });
    const r = await withAdmin(values, (c) => c.usage.summarizeUsage({ filter, groupBy: groups }));
    out.result((json(SummarizeUsageResponseSchema, r) as { aggregates: unknown[] }).aggregates, () =>
      printTable(
        r.aggregates.map((a) => ({
          ...(a.day ? { day: a.day } : {}),
          ...(a.keyId ? { key: a.keyId } : {}),
          ...(a.model ? { model: a.model } : {}),
          requests: a.requests.toString(),
          prompt_tokens: a.promptTokens.toString(),
          completion_tokens: a.completionTokens.toString(),
          cost_usd: formatUsd(nanos(a.costNanoUsd)),
          estimated: a.estimatedRequests.toString(),
        })),
      ),
    );
    return;
  }
  if (sub === "export") {
    const format =
      values.format === undefined || values.format === "csv"
        ? ExportFormat.CSV
        : values.format === "jsonl"
          ? ExportFormat.JSONL
          : undefined;
    if (format === undefined) throw new UsageError(`--format must be csv or jsonl, not "${values.format}"`);
    // Written as it arrives: the export never sits in memory, here or on the server.
    await withAdmin(values, async (c) => {
      for await (const { chunk } of c.usage.exportUsage({ filter, format })) {
        if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once("drain", resolve));
      }
    });
    return;
  }
  const r = await withAdmin(values, (c) =>
    c.usage.listUsage({ filter, pageSize: intFlag(values.limit, "--limit") ?? 100 }),
  );
  out.result((json(ListUsageResponseSchema, r) as { records: unknown[] }).records, () =>
    printTable(
      r.records.map((u) => ({
        time: when(u.time),
        key: u.keyId,
        model: u.model,
        status: u.status,
        prompt: u.promptTokens.toString(),
        completion: u.completionTokens.toString(),
        cached: u.cachedTokens.toString(),
        cost_usd: formatUsd(nanos(u.costNanoUsd)),
        estimated: u.estimated ? "yes" : "",
      })),
    ),
  );
};

/** `tollgate audit [--limit N]`: the admin change log, newest first. */
export const auditApi: Handler = async (args, out) => {
  const { values } = parse(args, { limit: { type: "string" } });
  const r = await withAdmin(values, (c) =>
    c.audit.listAuditEvents({ pageSize: intFlag(values.limit, "--limit") ?? 100 }),
  );
  out.result((json(ListAuditEventsResponseSchema, r) as { events: unknown[] }).events, () =>
    printTable(
      r.events.map((e) => ({
        time: when(e.time),
        token: e.tokenId,
        method: e.method.replace(/^tollgate\.admin\.v1\./, ""),
        targets: labelText(e.targets),
      })),
    ),
  );
};
