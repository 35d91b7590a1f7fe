import { toJson as protoJson, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { AdminDeps } from "../../admin/admin-deps.js";
import { adminRoutes } from "../../admin/admin-server.js";
import { formatUsd, formatUsdPerMillionTokens, nanos, parseUsdPerMillionTokens, picoPerToken } from "../../domain/money.js";
import { AccountService } from "../../gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService, ListAuditEventsResponseSchema } from "../../gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService, ModelSchema, PricesSchema, Tier, type Model } from "../../gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService, GetBalanceResponseSchema, ListLedgerEntriesResponseSchema, TopUpResponseSchema } from "../../gen/tollgate/admin/v1/credits_pb.js";
import { KeyService, KeySchema, type Key } from "../../gen/tollgate/admin/v1/keys_pb.js";
import { PlanSchema, PlanService, type Plan } from "../../gen/tollgate/admin/v1/plans_pb.js";
import { AccountSchema, type Account } from "../../gen/tollgate/admin/v1/accounts_pb.js";
import { ExportFormat, ListUsageResponseSchema, SummarizeUsageResponseSchema, UsageGrouping, UsageService, type UsageFilter } from "../../gen/tollgate/admin/v1/usage_pb.js";
import { configFrom, durationFlag, group, parse, required, UsageError, withStores, type Handler } from "../cli-kit.js";
import { printTable, type Output } from "../output.js";
import { amountFlag, publishBalance } from "./credits.js";
import { timeFlag } from "./usage.js";
import { create } from "@bufbuild/protobuf";

/** A failed admin call, carrying the API's code (snake_case) so main.ts prints `{"error":{"code":…}}` with it. */
export class AdminApiError extends Error {
  override name = "AdminApiError";
  constructor(message: string, readonly cliCode: string) {
    super(message);
  }
}

/** The admin clients a command uses. */
interface Clients {
  accounts: Client<typeof AccountService>;
  keys: Client<typeof KeyService>;
  plans: Client<typeof PlanService>;
  catalogue: Client<typeof CatalogueService>;
  credits: Client<typeof CreditService>;
  usage: Client<typeof UsageService>;
  audit: Client<typeof AuditService>;
}

function clients(transport: Transport): Clients {
  const c = <S extends DescService>(s: S) => createClient(s, transport);
  return { accounts: c(AccountService), keys: c(KeyService), plans: c(PlanService), catalogue: c(CatalogueService), credits: c(CreditService), usage: c(UsageService), audit: c(AuditService) };
}

/** Whether commands go through the admin API (TOLLGATE_ADMIN_URL is set) rather than the database. */
export function remoteAdmin(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.TOLLGATE_ADMIN_URL);
}

/**
 * Runs `fn` with admin clients: over Connect to TOLLGATE_ADMIN_URL with TOLLGATE_ADMIN_TOKEN when the URL is set,
 * else in-process against the database (the same service code, as the operator "cli"), so every command works both ways.
 */
async function withAdmin<T>(values: { config?: string | undefined }, fn: (c: Clients) => Promise<T>): Promise<T> {
  const run = async (transport: Transport) => {
    try {
      return await fn(clients(transport));
    } catch (error) {
      if (error instanceof ConnectError) throw new AdminApiError(error.rawMessage, Code[error.code].replace(/[A-Z]/g, (m, i) => (i ? "_" : "") + m.toLowerCase()));
      throw error;
    }
  };
  const url = process.env.TOLLGATE_ADMIN_URL;
  if (url) {
    const token = process.env.TOLLGATE_ADMIN_TOKEN;
    if (!token) throw new UsageError("TOLLGATE_ADMIN_TOKEN is required with TOLLGATE_ADMIN_URL (create one with `tollgate admin-tokens create --operator`)");
    return run(createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] }));
  }
  const config = configFrom(values);
  return withStores(values, (stores) => {
    const deps: AdminDeps = {
      stores,
      authenticate: async () => ({ kind: "operator", tokenId: "cli" }),
      keyMutations: stores.keys,
      invalidate: () => {},
      balanceCommitted: (change) => publishBalance(config, stores, change),
      reloadCatalogue: async () => {},
      platformFeeBps: config.credits.platform_fee_bps,
      clock: Date.now,
    };
    return run(createRouterTransport(adminRoutes(deps, { reflection: false })));
  });
}

const json = <D extends DescMessage>(schema: D, message: MessageShape<D>) => protoJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "-");
const labelText = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",");
const TIERS: Record<string, Tier> = { basic: Tier.BASIC, premium: Tier.PREMIUM };
const TIER_NAMES = new Map<Tier, string>([[Tier.BASIC, "basic"], [Tier.PREMIUM, "premium"]]);

function intFlag(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${flag} must be a non-negative integer, not "${text}"`);
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
const modelsFlag = (text: string | undefined) => (text === undefined ? undefined : text.split(",").map((m) => m.trim()).filter(Boolean));

function showAccounts(out: Output, accounts: Account[]) {
  out.result(accounts.map((a) => json(AccountSchema, a)), () => printTable(accounts.map((a) => ({ id: a.id, name: a.name, plan: a.planId, suspended: a.suspended }))));
}
function showKeys(out: Output, keys: Key[]) {
  out.result(keys.map((k) => json(KeySchema, k)), () =>
    printTable(keys.map((k) => ({
      id: k.id, name: k.name, prefix: k.displayPrefix + "…", labels: labelText(k.labels), models: k.allowedModels.join(",") || "(plan)",
      rpm: k.requestsPerMinute || "(plan)", tpm: k.tokensPerMinute ? k.tokensPerMinute.toString() : "(plan)", last_used: when(k.lastUsedAt), revoked: when(k.revokedAt),
    }))),
  );
}
function showPlans(out: Output, plans: Plan[]) {
  out.result(plans.map((p) => json(PlanSchema, p)), () =>
    printTable(plans.map((p) => ({ id: p.id, name: p.name, rpm: p.requestsPerMinute, tpm: p.tokensPerMinute.toString(), tiers: p.tiers.map((t) => TIER_NAMES.get(t)).join(","), retired: p.retired }))),
  );
}
function showModels(out: Output, models: Model[]) {
  const usd = (p: bigint | undefined) => formatUsdPerMillionTokens(picoPerToken(p ?? 0n));
  out.result(models.map((m) => json(ModelSchema, m)), () =>
    printTable(models.map((m) => ({
      id: m.id, provider: m.provider, tier: TIER_NAMES.get(m.tier) ?? "", input_usd_per_m: usd(m.prices?.inputPicoUsdPerToken),
      cached_usd_per_m: usd(m.prices?.cachedInputPicoUsdPerToken), output_usd_per_m: usd(m.prices?.outputPicoUsdPerToken), retired: m.retired,
    }))),
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
    out.result(json(AccountSchema, account!), () => `created account ${account!.id} (${account!.name}, plan ${account!.planId})`);
  },
  async list(args, out) {
    const { values } = parse(args, {});
    const all = await withAdmin(values, (c) => allPages(async (pageToken) => {
      const page = await c.accounts.listAccounts({ pageToken, pageSize: 1000 });
      return { rows: page.accounts, nextPageToken: page.nextPageToken };
    }));
    showAccounts(out, all);
  },
  async get(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const accountId = required(positionals[0], "ACCOUNT_ID");
    const { account } = await withAdmin(values, (c) => c.accounts.getAccount({ accountId }));
    showAccounts(out, [account!]);
  },
  async update(args, out) {
    const { values, positionals } = parse(args, { name: { type: "string" }, plan: { type: "string" }, suspend: { type: "boolean" }, resume: { type: "boolean" } }, 1);
    const accountId = required(positionals[0], "ACCOUNT_ID");
    if (values.suspend && values.resume) throw new UsageError("--suspend and --resume cannot be combined");
    const suspended = values.suspend ? true : values.resume ? false : undefined;
    const { account } = await withAdmin(values, (c) => c.accounts.updateAccount({ accountId, name: values.name, planId: values.plan, suspended }));
    out.result(json(AccountSchema, account!), () => `updated account ${account!.id} (${account!.name}, plan ${account!.planId}${account!.suspended ? ", suspended" : ""})`);
  },
});

/** `tollgate keys …` through the admin API. */
export const keysApi: Handler = group("keys", {
  async create(args, out) {
    const { values } = parse(args, {
      account: { type: "string" }, name: { type: "string" }, "expires-in": { type: "string" }, models: { type: "string" },
      label: { type: "string", multiple: true }, rpm: { type: "string" }, tpm: { type: "string" },
    });
    const accountId = required(values.account, "--account");
    const expiresIn = values["expires-in"] === undefined ? undefined : durationFromMs(durationFlag(values["expires-in"], "--expires-in"));
    const r = await withAdmin(values, (c) =>
      c.keys.createKey({
        accountId, name: values.name ?? "", labels: labelsFlag(values.label) ?? {}, allowedModels: modelsFlag(values.models) ?? [],
        requestsPerMinute: intFlag(values.rpm, "--rpm") ?? 0, tokensPerMinute: BigInt(intFlag(values.tpm, "--tpm") ?? 0), expiresIn,
      }),
    );
    out.result({ ...json(KeySchema, r.key!) as object, secret: r.secret }, () => `created key ${r.key!.id}\n\n  ${r.secret}\n\n${shownOnce}`);
  },
  async list(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = values.account ?? "";
    const keys = await withAdmin(values, (c) => allPages(async (pageToken) => {
      const page = await c.keys.listKeys({ accountId, pageToken, pageSize: 1000 });
      return { rows: page.keys, nextPageToken: page.nextPageToken };
    }));
    showKeys(out, keys);
  },
  async get(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const { key } = await withAdmin(values, (c) => c.keys.getKey({ keyId }));
    showKeys(out, [key!]);
  },
  async update(args, out) {
    const { values, positionals } = parse(args, { name: { type: "string" }, rpm: { type: "string" }, tpm: { type: "string" }, models: { type: "string" }, "all-models": { type: "boolean" }, label: { type: "string", multiple: true } }, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const models = values["all-models"] ? [] : modelsFlag(values.models);
    const labels = labelsFlag(values.label);
    const tpm = intFlag(values.tpm, "--tpm");
    const { key } = await withAdmin(values, (c) =>
      c.keys.updateKey({
        keyId, name: values.name, requestsPerMinute: intFlag(values.rpm, "--rpm"), tokensPerMinute: tpm === undefined ? undefined : BigInt(tpm),
        allowedModels: models === undefined ? undefined : { models }, labels: labels === undefined ? undefined : { labels },
      }),
    );
    out.result(json(KeySchema, key!), () => `updated key ${key!.id}`);
  },
  async rotate(args, out) {
    const { values, positionals } = parse(args, { grace: { type: "string" } }, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const grace = values.grace === undefined ? undefined : durationFromMs(durationFlag(values.grace, "--grace"));
    const r = await withAdmin(values, (c) => c.keys.rotateKey({ keyId, grace }));
    out.result({ ...json(KeySchema, r.key!) as object, secret: r.secret }, () =>
      `rotated key ${r.key!.id}${grace ? ` (old secret valid for ${values.grace})` : " (old secret rejected from now on)"}\n\n  ${r.secret}\n\n${shownOnce}`,
    );
  },
  async revoke(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const keyId = required(positionals[0], "KEY_ID");
    const { key } = await withAdmin(values, (c) => c.keys.revokeKey({ keyId }));
    out.result(json(KeySchema, key!), () => `revoked key ${key!.id}`);
  },
});

const planFlags = { name: { type: "string" }, rpm: { type: "string" }, tpm: { type: "string" }, tiers: { type: "string" } } as const;

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
      id, name: required(values.name, "--name"), requestsPerMinute: intFlag(required(values.rpm, "--rpm"), "--rpm"),
      tokensPerMinute: BigInt(intFlag(required(values.tpm, "--tpm"), "--tpm")!), tiers: tiersFlag(required(values.tiers, "--tiers")),
    });
    const r = await withAdmin(values, (c) => c.plans.createPlan({ plan }));
    out.result(json(PlanSchema, r.plan!), () => `created plan ${r.plan!.id}`);
  },
  async update(args, out) {
    const { values, positionals } = parse(args, planFlags, 1);
    const planId = required(positionals[0], "PLAN_ID");
    const tpm = intFlag(values.tpm, "--tpm");
    const r = await withAdmin(values, (c) =>
      c.plans.updatePlan({ planId, name: values.name, requestsPerMinute: intFlag(values.rpm, "--rpm"), tokensPerMinute: tpm === undefined ? undefined : BigInt(tpm), tiers: tiersFlag(values.tiers) }),
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
  name: { type: "string" }, provider: { type: "string" }, upstream: { type: "string" }, tier: { type: "string" }, input: { type: "string" },
  "cached-input": { type: "string" }, output: { type: "string" }, "context-window": { type: "string" }, "max-output": { type: "string" },
} as const;

/** `tollgate models list|create|update|retire` (prices in USD per million tokens, stored exactly). */
export const modelsApi: Handler = group("models", {
  async list(args, out) {
    const { values } = parse(args, { all: { type: "boolean" } });
    showModels(out, (await withAdmin(values, (c) => c.catalogue.listModels({ includeRetired: values.all ?? false }))).models);
  },
  async create(args, out) {
    const { values, positionals } = parse(args, modelFlags, 1);
    const id = required(positionals[0], "MODEL_ID");
    const tier = TIERS[required(values.tier, "--tier")];
    if (tier === undefined) throw new UsageError(`--tier must be basic or premium, not "${values.tier}"`);
    const model = create(ModelSchema, {
      id, name: values.name ?? id, provider: required(values.provider, "--provider"), upstreamModel: values.upstream ?? id, tier,
      prices: create(PricesSchema, {
        inputPicoUsdPerToken: priceFlag(required(values.input, "--input"), "--input"),
        cachedInputPicoUsdPerToken: priceFlag(values["cached-input"] ?? values.input, "--cached-input"),
        outputPicoUsdPerToken: priceFlag(required(values.output, "--output"), "--output"),
      }),
      contextWindow: intFlag(required(values["context-window"], "--context-window"), "--context-window"),
      maxOutputTokens: intFlag(required(values["max-output"], "--max-output"), "--max-output"),
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
      let prices;
      if (priced) {
        // A price flag left out keeps its current value: prices are replaced as a whole on the wire.
        const current = (await c.catalogue.getModel({ modelId })).model!.prices!;
        prices = create(PricesSchema, {
          inputPicoUsdPerToken: priceFlag(values.input, "--input") ?? current.inputPicoUsdPerToken,
          cachedInputPicoUsdPerToken: priceFlag(values["cached-input"], "--cached-input") ?? current.cachedInputPicoUsdPerToken,
          outputPicoUsdPerToken: priceFlag(values.output, "--output") ?? current.outputPicoUsdPerToken,
        });
      }
      return c.catalogue.updateModel({
        modelId, name: values.name, upstreamModel: values.upstream, tier, prices,
        contextWindow: intFlag(values["context-window"], "--context-window"), maxOutputTokens: intFlag(values["max-output"], "--max-output"),
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
    const { values } = parse(args, { account: { type: "string" }, amount: { type: "string" }, "idempotency-key": { type: "string" } });
    const accountId = required(values.account, "--account");
    const amount = amountFlag(required(values.amount, "--amount"));
    const idempotencyKey = values["idempotency-key"] ?? `cli-${crypto.randomUUID()}`;
    const r = await withAdmin(values, (c) => c.credits.topUp({ accountId, amountNanoUsd: amount, idempotencyKey }));
    out.result(json(TopUpResponseSchema, r), () =>
      `added ${formatUsd(nanos(r.creditNanoUsd))} USD to ${accountId} (platform fee ${formatUsd(nanos(r.platformFeeNanoUsd))} USD; customer pays ${formatUsd(nanos(r.chargedNanoUsd))} USD); balance ${formatUsd(nanos(r.balanceNanoUsd))} USD${r.replayed ? " (replayed: this idempotency key was already used)" : ""}`,
    );
  },
  async balance(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = required(values.account, "--account");
    const r = await withAdmin(values, (c) => c.credits.getBalance({ accountId }));
    out.result(json(GetBalanceResponseSchema, r), () => `${accountId}: ${formatUsd(nanos(r.balanceNanoUsd))} USD`);
  },
  async ledger(args, out) {
    const { values } = parse(args, { account: { type: "string" }, limit: { type: "string" } });
    const accountId = required(values.account, "--account");
    const r = await withAdmin(values, (c) => c.credits.listLedgerEntries({ accountId, pageSize: intFlag(values.limit, "--limit") ?? 100 }));
    out.result(json(ListLedgerEntriesResponseSchema, r), () =>
      printTable(r.entries.map((e) => ({ id: e.id, time: when(e.createdAt), kind: e.kind, amount_usd: formatUsd(nanos(e.amountNanoUsd)), reference: e.reference, estimated: e.estimated ? "yes" : "" }))),
    );
  },
});

/** `tollgate usage [summary|export] …` through the admin API. */
export const usageApi: Handler = async (args, out) => {
  const sub = args[0] === "summary" || args[0] === "export" ? args[0] : "list";
  const rest = sub === "list" ? args : args.slice(1);
  const { values } = parse(rest, {
    account: { type: "string" }, key: { type: "string" }, model: { type: "string" }, since: { type: "string" }, until: { type: "string" },
    limit: { type: "string" }, daily: { type: "boolean" }, "group-by": { type: "string" }, format: { type: "string" },
  });
  const since = timeFlag(values.since, "--since");
  const until = timeFlag(values.until, "--until");
  const filter = {
    accountId: values.account ?? "", keyId: values.key ?? "", model: values.model ?? "",
    startTime: since === undefined ? undefined : timestampFromMs(since), endTime: until === undefined ? undefined : timestampFromMs(until),
  } as UsageFilter;
  if (sub === "summary" || values.daily) {
    const groups = (values["group-by"] ?? (values.daily ? "day,key,model" : "")).split(",").filter(Boolean).map((g) => {
      const grouping = ({ key: UsageGrouping.KEY, model: UsageGrouping.MODEL, day: UsageGrouping.DAY } as Record<string, UsageGrouping>)[g];
      if (grouping === undefined) throw new UsageError(`--group-by takes key, model and/or day, not "${g}"`);
      return grouping;
    });
    const r = await withAdmin(values, (c) => c.usage.summarizeUsage({ filter, groupBy: groups }));
    out.result(json(SummarizeUsageResponseSchema, r), () =>
      printTable(r.aggregates.map((a) => ({
        ...(a.day ? { day: a.day } : {}), ...(a.keyId ? { key: a.keyId } : {}), ...(a.model ? { model: a.model } : {}),
        requests: a.requests.toString(), prompt_tokens: a.promptTokens.toString(), completion_tokens: a.completionTokens.toString(),
        cost_usd: formatUsd(nanos(a.costNanoUsd)), estimated: a.estimatedRequests.toString(),
      }))),
    );
    return;
  }
  if (sub === "export") {
    const format = values.format === undefined || values.format === "csv" ? ExportFormat.CSV : values.format === "jsonl" ? ExportFormat.JSONL : undefined;
    if (format === undefined) throw new UsageError(`--format must be csv or jsonl, not "${values.format}"`);
    // Written as it arrives: the export never sits in memory, here or on the server.
    await withAdmin(values, async (c) => {
      for await (const { chunk } of c.usage.exportUsage({ filter, format })) {
        if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once("drain", resolve));
      }
    });
    return;
  }
  const r = await withAdmin(values, (c) => c.usage.listUsage({ filter, pageSize: intFlag(values.limit, "--limit") ?? 100 }));
  out.result(json(ListUsageResponseSchema, r), () =>
    printTable(r.records.map((u) => ({
      time: when(u.time), key: u.keyId, model: u.model, status: u.status, prompt: u.promptTokens.toString(), completion: u.completionTokens.toString(),
      cached: u.cachedTokens.toString(), cost_usd: formatUsd(nanos(u.costNanoUsd)), estimated: u.estimated ? "yes" : "",
    }))),
  );
};

/** `tollgate audit [--limit N]`: the admin change log, newest first. */
export const auditApi: Handler = async (args, out) => {
  const { values } = parse(args, { limit: { type: "string" } });
  const r = await withAdmin(values, (c) => c.audit.listAuditEvents({ pageSize: intFlag(values.limit, "--limit") ?? 100 }));
  out.result(json(ListAuditEventsResponseSchema, r), () =>
    printTable(r.events.map((e) => ({ time: when(e.time), token: e.tokenId, method: e.method.replace(/^tollgate\.admin\.v1\./, ""), targets: labelText(e.targets) }))),
  );
};
