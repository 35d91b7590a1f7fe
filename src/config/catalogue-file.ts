import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { TIERS, type CatalogueModel, type Plan, type Provider } from "../domain/catalogue.js";
import { parseUsdPerMillionTokens } from "../domain/money.js";
import { ConfigError } from "./config.js";

const price = z.string().regex(/^\d+(\.\d{1,6})?$/, 'expected USD per million tokens as a string, e.g. "1.25"');
const id = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, "expected a lower-case id (letters, digits, . _ -)");

const fileSchema = z
  .object({
    providers: z.array(z.object({ id, base_path: z.string().regex(/^(\/[A-Za-z0-9._-]+)*$/, 'expected "" or a path like "/v1"') }).strict()),
    plans: z.array(
      z
        .object({
          id,
          name: z.string().min(1),
          requests_per_minute: z.number().int().positive(),
          tokens_per_minute: z.number().int().positive(),
          tiers: z.array(z.enum(TIERS as [string, ...string[]])).min(1),
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
        })
        .strict(),
    ),
  })
  .strict();

/** The catalogue, plans and providers a file declares, ready to store. */
export interface CatalogueFile {
  providers: Provider[];
  plans: Plan[];
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
    providers: file.providers.map((p) => ({ id: p.id, basePath: p.base_path })),
    plans: file.plans.map((p) => ({
      id: p.id,
      displayName: p.name,
      requestsPerMinute: p.requests_per_minute,
      tokensPerMinute: p.tokens_per_minute,
      tiers: p.tiers as Plan["tiers"],
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
      retired: false,
    })),
  };
}
