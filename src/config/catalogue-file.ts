import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { TIERS, type CatalogueModel, type Plan, type Provider } from "../domain/catalogue.js";
import type { PlanGrants } from "../domain/grants.js";
import { MAX_BALANCE_NANOS, parseUsd, parseUsdPerMillionTokens } from "../domain/money.js";
import { ConfigError } from "./config.js";

const price = z.string().regex(/^\d+(\.\d{1,6})?$/, 'expected USD per million tokens as a string, e.g. "1.25"');
const id = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, "expected a lower-case id (letters, digits, . _ -)");
// Where Envoy sends the provider's requests (`tollgate envoy render`): an origin only; base_path is the path.
const upstream = z
  .string()
  .refine(
    isOrigin,
    'expected an origin such as "https://api.openai.com" or "http://vllm.internal:8000" (http or https, no path, query or credentials)',
  );

function isOrigin(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (
    (url.protocol === "https:" || url.protocol === "http:") &&
    url.hostname !== "" &&
    url.username === "" &&
    url.password === "" &&
    url.pathname === "/" &&
    !/^[a-z]+:\/\/[^/]*\/./i.test(text) &&
    url.search === "" &&
    !text.includes("?") &&
    url.hash === ""
  );
}

/** An amount of USD as a decimal string ("1", "0.5"), at most an account's largest balance. */
const usd = z
  .string()
  .regex(/^\d+(\.\d{1,9})?$/, 'expected USD as a decimal string such as "1" or "0.50"')
  .refine((text) => parseUsd(text) <= MAX_BALANCE_NANOS, "at most USD 9000000");

const fileSchema = z
  .object({
    providers: z.array(
      z
        .object({
          id,
          base_path: z.string().regex(/^(\/[A-Za-z0-9._-]+)*$/, 'expected "" or a path like "/v1"'),
          upstream: upstream.optional(),
        })
        .strict(),
    ),
    plans: z.array(
      z
        .object({
          id,
          name: z.string().min(1),
          requests_per_minute: z.number().int().positive(),
          tokens_per_minute: z.number().int().positive(),
          tiers: z.array(z.enum(TIERS as [string, ...string[]])).min(1),
          max_keys: z.number().int().positive().max(100_000).default(100),
          expected_output_tokens: z.number().int().positive().optional(),
          requests_per_day: z.number().int().positive().optional(),
          tokens_per_day: z.number().int().positive().optional(),
          max_concurrency: z.number().int().positive().optional(),
          // Free credit in USD (decimal strings, like prices): once at sign-up, and each UTC month.
          grant_signup_usd: usd.optional(),
          grant_monthly_usd: usd.optional(),
        })
        .strict(),
    ),
    models: z.array(
      z
        .object({
          id,
          name: z.string().min(1),
          provider: id,
          upstream_model: z.string().min(1),
          tier: z.enum(TIERS as [string, ...string[]]),
          price_input: price,
          price_cached_input: price,
          price_output: price,
          context_window: z.number().int().positive(),
          max_output_tokens: z.number().int().positive(),
          expected_output_tokens: z.number().int().positive().optional(),
        })
        .strict(),
    ),
  })
  .strict();

/** A provider as the file declares it: what authz needs, and the origin Envoy's cluster reaches (when given). */
export type CatalogueFileProvider = Provider & { upstream?: string };

/** The catalogue, plans and providers a file declares, ready to store. */
export interface CatalogueFile {
  providers: CatalogueFileProvider[];
  /** Plans with how many live keys an account on each may hold. */
  plans: Array<Plan & { maxKeys: number; grants?: PlanGrants }>;
  models: CatalogueModel[];
}

/** Reads and validates a catalogue file; a bad entry stops start-up naming the file and the field's path. */
export function readCatalogueFile(path: string): CatalogueFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigError(`catalogue: cannot read ${path}: ${(error as Error).message}`);
  }
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(`catalogue: ${issue.path.join(".")}: ${issue.message} (in ${path})`);
  }
  const file = result.data;
  const providers = new Set(file.providers.map((p) => p.id));
  file.models.forEach((m, i) => {
    if (!providers.has(m.provider)) {
      throw new ConfigError(`catalogue: models.${i}.provider: unknown provider "${m.provider}" (in ${path})`);
    }
  });
  return {
    providers: file.providers.map((p) => ({
      id: p.id,
      basePath: p.base_path,
      ...(p.upstream === undefined ? {} : { upstream: p.upstream }),
    })),
    plans: file.plans.map((p) => ({
      id: p.id,
      displayName: p.name,
      requestsPerMinute: p.requests_per_minute,
      tokensPerMinute: p.tokens_per_minute,
      tiers: p.tiers as Plan["tiers"],
      maxKeys: p.max_keys,
      expectedOutputTokens: p.expected_output_tokens ?? null,
      requestsPerDay: p.requests_per_day ?? null,
      tokensPerDay: p.tokens_per_day ?? null,
      maxConcurrency: p.max_concurrency ?? null,
      grants: {
        signup: parseUsd(p.grant_signup_usd ?? "0"),
        monthly: parseUsd(p.grant_monthly_usd ?? "0"),
      },
    })),
    models: file.models.map((m) => ({
      id: m.id,
      displayName: m.name,
      provider: m.provider,
      upstreamModel: m.upstream_model,
      tier: m.tier as CatalogueModel["tier"],
      prices: {
        input: parseUsdPerMillionTokens(m.price_input),
        cachedInput: parseUsdPerMillionTokens(m.price_cached_input),
        output: parseUsdPerMillionTokens(m.price_output),
      },
      contextWindow: m.context_window,
      maxOutputTokens: m.max_output_tokens,
      expectedOutputTokens: m.expected_output_tokens ?? null,
      retired: false,
    })),
  };
}
