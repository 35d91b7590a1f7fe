import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** The repository / package root, for defaults that point at shipped files. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const listen = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:9001"');
const databaseUrl = z
  .string()
  .regex(/^(sqlite:|postgres:\/\/|postgresql:\/\/)/, 'expected "sqlite:PATH" or "postgres://…"');
const redisUrl = z.string().regex(/^rediss?:\/\//, 'expected "redis://host:port[/db]"');

const schema = z
  .object({
    database: z.object({ url: databaseUrl.default("sqlite:./data/tollgate.db") }).strict().default({ url: "sqlite:./data/tollgate.db" }),
    redis: z
      .object({
        url: redisUrl.optional(),
        fail_open: z.boolean().default(false),
        // Prefix of every Redis key and channel, so several deployments (or test runs) can share one Redis.
        prefix: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.' or '-'").default("tollgate"),
        // A hot-path Redis command slower than this counts as Redis down; keep it under Envoy's ext_authz timeout (1 s).
        command_timeout_ms: z.number().int().min(10).max(60_000).default(900),
      })
      .strict()
      .default({ fail_open: false, prefix: "tollgate", command_timeout_ms: 900 }),
    authz: z.object({ listen: listen.default("127.0.0.1:9001") }).strict().default({ listen: "127.0.0.1:9001" }),
    meter: z
      .object({
        listen: listen.default("127.0.0.1:9002"),
        // An unsettled credit reservation expires after this long into an estimated worst-case charge.
        reservation_ttl_ms: z.number().int().min(1000).max(86_400_000).default(600_000),
        // Group commit: a transaction as soon as batch_max events are queued, else batch_window_ms after the first.
        batch_max: z.number().int().min(1).max(5000).default(2000),
        batch_window_ms: z.number().int().min(0).max(1000).default(5),
        // usage_log rows and dead letters older than this are pruned (the ledger and daily rollups are kept).
        retention_days: z.number().int().min(1).max(3650).default(90),
        // While the ledger database is unreachable the meter spools batches here (one SQLite file per database) and
        // replays them, oldest first, when it returns; a leftover spool is replayed at start.
        spool_dir: z.string().min(1).default("./data/spool"),
      })
      .strict()
      .default({ listen: "127.0.0.1:9002", reservation_ttl_ms: 600_000, batch_max: 2000, batch_window_ms: 5, retention_days: 90, spool_dir: "./data/spool" }),
    credits: z
      .object({ platform_fee_bps: z.number().int().min(0).max(100_000).default(2500) })
      .strict()
      .default({ platform_fee_bps: 2500 }),
    admin: z.object({ listen: listen.default("127.0.0.1:8080") }).strict().default({ listen: "127.0.0.1:8080" }),
    catalogue: z
      .object({ file: z.string().min(1).default(join(PACKAGE_ROOT, "catalogue/default.yaml")) })
      .strict()
      .default({ file: join(PACKAGE_ROOT, "catalogue/default.yaml") }),
    providers: z.record(z.string().regex(/^[a-z][a-z0-9_-]*$/, "provider ids are lower-case"), z.object({ api_key: z.string().min(1).optional() }).strict()).default({}),
    keys: z
      .object({ poll_interval_ms: z.number().int().min(50).max(60_000).default(1000) })
      .strict()
      .default({ poll_interval_ms: 1000 }),
    log: z
      .object({ level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info") })
      .strict()
      .default({ level: "info" }),
    // /metrics is always on the admin port when the admin role runs; metrics.listen adds a plain HTTP listener
    // (/metrics, /healthz, /readyz) so authz-only and meter-only replicas can be scraped too.
    metrics: z.object({ listen: listen.optional() }).strict().default({}),
    // On SIGTERM health turns NOT_SERVING at once; servers keep accepting for drain_delay_ms so Envoy's health
    // checker notices first (set it to about two health-check intervals when several replicas run).
    shutdown: z
      .object({ drain_delay_ms: z.number().int().min(0).max(60_000).default(0) })
      .strict()
      .default({ drain_delay_ms: 0 }),
  })
  .strict();

/** The parsed configuration every role starts from. */
export type Config = z.infer<typeof schema>;

/** A configuration value that cannot be used; the message names the field and where it came from. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Environment variables that map onto config fields, and the field each sets. */
const ENV_FIELDS: Record<string, string[]> = {
  TOLLGATE_DATABASE_URL: ["database", "url"],
  TOLLGATE_REDIS_URL: ["redis", "url"],
  TOLLGATE_REDIS_FAIL_OPEN: ["redis", "fail_open"],
  TOLLGATE_REDIS_PREFIX: ["redis", "prefix"],
  TOLLGATE_REDIS_COMMAND_TIMEOUT_MS: ["redis", "command_timeout_ms"],
  TOLLGATE_AUTHZ_LISTEN: ["authz", "listen"],
  TOLLGATE_METER_LISTEN: ["meter", "listen"],
  TOLLGATE_METER_RESERVATION_TTL_MS: ["meter", "reservation_ttl_ms"],
  TOLLGATE_METER_BATCH_MAX: ["meter", "batch_max"],
  TOLLGATE_METER_BATCH_WINDOW_MS: ["meter", "batch_window_ms"],
  TOLLGATE_METER_RETENTION_DAYS: ["meter", "retention_days"],
  TOLLGATE_METER_SPOOL_DIR: ["meter", "spool_dir"],
  TOLLGATE_CREDITS_PLATFORM_FEE_BPS: ["credits", "platform_fee_bps"],
  TOLLGATE_ADMIN_LISTEN: ["admin", "listen"],
  TOLLGATE_CATALOGUE_FILE: ["catalogue", "file"],
  TOLLGATE_KEYS_POLL_INTERVAL_MS: ["keys", "poll_interval_ms"],
  TOLLGATE_LOG_LEVEL: ["log", "level"],
  TOLLGATE_METRICS_LISTEN: ["metrics", "listen"],
  TOLLGATE_SHUTDOWN_DRAIN_DELAY_MS: ["shutdown", "drain_delay_ms"],
};

/**
 * Loads the configuration once at start-up: the YAML file (TOLLGATE_CONFIG or `file`), then environment variables
 * on top (TOLLGATE_*; provider credentials as TOLLGATE_PROVIDER_<ID>_API_KEY). A bad value throws a ConfigError
 * naming the field and its source, so start-up stops before anything listens.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.TOLLGATE_CONFIG;
  const sources = new Map<string, string>();
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw new ConfigError(`config: cannot read ${file}: ${(error as Error).message}`);
    }
    try {
      raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
    } catch (error) {
      throw new ConfigError(`config: ${file} is not valid YAML: ${(error as Error).message}`);
    }
    if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`config: ${file} must be a YAML mapping`);
  }
  for (const [name, path] of Object.entries(ENV_FIELDS)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    setPath(raw, path, coerce(value));
    sources.set(path.join("."), `environment variable ${name}`);
  }
  for (const [name, value] of Object.entries(env)) {
    const match = /^TOLLGATE_PROVIDER_([A-Z0-9_]+)_API_KEY$/.exec(name);
    if (!match || !value) continue;
    const id = match[1]!.toLowerCase();
    setPath(raw, ["providers", id, "api_key"], value);
    sources.set(`providers.${id}.api_key`, `environment variable ${name}`);
  }
  for (const [path, value] of Object.entries(options.overrides ?? {})) {
    setPath(raw, path.split("."), value);
    sources.set(path, "command line");
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.join(".") || (issue.code === "unrecognized_keys" ? "" : "(root)");
    const keys = issue.code === "unrecognized_keys" ? (issue as { keys: string[] }).keys : [];
    const name = keys.length > 0 ? [field, keys[0]].filter(Boolean).join(".") : field;
    const source = sources.get(name) ?? (file ? file : "defaults");
    const message = keys.length > 0 ? "unknown field" : issue.message;
    throw new ConfigError(`config: ${name}: ${message} (from ${source})`);
  }
  return result.data;
}

function coerce(value: string): unknown {
  if (value === "true" || value === "false") return value === "true";
  if (/^\d+$/.test(value)) return Number(value);
  return value;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (next === undefined || next === null || typeof next !== "object") node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

/** Splits "host:port" (IPv6 in brackets) for servers that take them apart. */
export function splitListen(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return { host: address.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(address.slice(at + 1)) };
}
