import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { createTargetPolicy } from "../domain/webhook-targets.js";

/** The repository / package root, for defaults that point at shipped files. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const listen = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:9001"');
const databaseUrl = z
  .string()
  .regex(/^(sqlite:|postgres:\/\/|postgresql:\/\/)/, 'expected "sqlite:PATH" or "postgres://…"');
// One primary, or a Redis Cluster by its seed nodes (any one reachable node is enough; list several).
const clusterSeed = String.raw`(\[[0-9a-fA-F:.]+\]|[^:,@/?#[\]]+):\d{1,5}`;
const redisUrl = z
  .string()
  .regex(
    new RegExp(String.raw`^(rediss?://|rediss?\+cluster://([^@/?#]*@)?${clusterSeed}(,${clusterSeed})*/?$)`),
    'expected "redis://host:port[/db]" or "redis+cluster://host:port,host:port"',
  );
// Signing secrets are compared as UTF-8 bytes: at least 32 (the HMAC-SHA256 key size).
const signingSecret = z.string().refine((s) => Buffer.byteLength(s, "utf8") >= 32, "must be at least 32 bytes");
// A comma-separated list from the environment, a YAML list from the file.
const secretList = z.preprocess(
  (v) =>
    typeof v === "string"
      ? v
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : v,
  z.array(signingSecret),
);
const TLS_FILES = ["cert_file", "key_file", "client_ca_file"] as const;
const tlsFields = {
  cert_file: z.string().min(1).optional(),
  key_file: z.string().min(1).optional(),
  client_ca_file: z.string().min(1).optional(),
};
/** A gRPC server's TLS files: all three or none (mTLS: the client CA is required, so only Envoy gets in). */
function allOrNone(t: Partial<Record<(typeof TLS_FILES)[number], string>>, ctx: z.RefinementCtx): void {
  const set = TLS_FILES.filter((k) => t[k] !== undefined);
  if (set.length === 0 || set.length === 3) return;
  const missing = TLS_FILES.find((k) => t[k] === undefined)!;
  ctx.addIssue({
    code: z.ZodIssueCode.custom,
    path: [missing],
    message: `required when ${set.join(" and ")} ${set.length === 1 ? "is" : "are"} set (mTLS needs a certificate, its key and the CA that signs Envoy's client certificate)`,
  });
}
const tlsFiles = z.object(tlsFields).strict().superRefine(allOrNone);
/** The local edge's client side of mTLS: its certificate and key (both or neither), whom it trusts, what it expects. */
const edgeTls = z
  .object({
    cert_file: z.string().min(1).optional(),
    key_file: z.string().min(1).optional(),
    ca_file: z.string().min(1).optional(),
    server_name: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.cert_file === undefined) === (t.key_file === undefined)) return;
    const missing = t.cert_file === undefined ? "cert_file" : "key_file";
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: [missing],
      message: `required when ${missing === "cert_file" ? "key_file" : "cert_file"} is set (the local edge presents a client certificate and its key)`,
    });
  });

const schema = z
  .object({
    database: z
      .object({ url: databaseUrl.default("sqlite:./data/tollgate.db") })
      .strict()
      .default({ url: "sqlite:./data/tollgate.db" }),
    // Local state of this machine: `serve` writes the local operator credential (admin-token, mode 0600) here.
    data: z
      .object({ dir: z.string().min(1).default("./data") })
      .strict()
      .default({ dir: "./data" }),
    redis: z
      .object({
        url: redisUrl.optional(),
        fail_open: z.boolean().default(false),
        // Prefix of every Redis key and channel, so several deployments (or test runs) can share one Redis.
        prefix: z
          .string()
          .regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.' or '-'")
          .default("tollgate"),
        // A hot-path Redis command slower than this counts as Redis down; keep it under Envoy's ext_authz timeout (1 s).
        command_timeout_ms: z.number().int().min(10).max(60_000).default(900),
        // true asserts that Redis loses no acknowledged write across a restart or failover (appendfsync always, and
        // synchronous replication to whichever replica takes over): then only an emptied dataset fences credit.
        // false (default): any restart or failover of Redis fences paid admissions for one reservation TTL.
        durable: z.boolean().default(false),
      })
      .strict()
      .default({ fail_open: false, prefix: "tollgate", command_timeout_ms: 900, durable: false }),
    authz: z
      .object({ listen: listen.default("127.0.0.1:9001") })
      .strict()
      .default({ listen: "127.0.0.1:9001" }),
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
      .default({
        listen: "127.0.0.1:9002",
        reservation_ttl_ms: 600_000,
        batch_max: 2000,
        batch_window_ms: 5,
        retention_days: 90,
        spool_dir: "./data/spool",
      }),
    credits: z
      .object({
        platform_fee_bps: z.number().int().min(0).max(100_000).default(2500),
        // Unsettled reservations one account may hold (any gate) and one in-process gate may hold in all: admission
        // refuses beyond them (429), so memory stays bounded whatever the admission rate × reservation TTL.
        max_open_reservations_per_account: z.number().int().min(1).max(1_000_000).default(10_000),
        max_open_reservations_total: z.number().int().min(1).max(10_000_000).default(200_000),
      })
      .strict()
      .default({
        platform_fee_bps: 2500,
        max_open_reservations_per_account: 10_000,
        max_open_reservations_total: 200_000,
      }),
    // The admin port faces operators' networks: bodies are capped before they are read, stalled or idle
    // connections are closed, and connections beyond max_connections are refused.
    admin: z
      .object({
        listen: listen.default("127.0.0.1:8080"),
        max_body_bytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 2 ** 20)
          .default(2 ** 20),
        max_connections: z.number().int().min(1).max(100_000).default(1024),
        idle_timeout_ms: z.number().int().min(100).max(3_600_000).default(60_000),
        headers_timeout_ms: z.number().int().min(100).max(300_000).default(10_000),
        // A request's body must arrive whole within this (HTTP/1.1 and each HTTP/2 stream); responses may stream longer.
        request_timeout_ms: z.number().int().min(100).max(3_600_000).default(30_000),
        // Request bytes held in memory across every stream and connection at once; new bodies beyond it are refused.
        max_buffered_bytes: z
          .number()
          .int()
          .min(1024)
          .max(2 ** 32)
          .default(64 * 2 ** 20),
        max_connections_per_ip: z.number().int().min(1).max(100_000).default(64),
        // Changes (create, update, rotate, revoke) one account token may make: a token bucket per token.
        account_writes_per_second: z.number().int().min(1).max(100_000).default(10),
        account_write_burst: z.number().int().min(1).max(1_000_000).default(50),
        // Requests of any kind (reads too) one account token may make: a token bucket per token and process, taken
        // once the token is verified and before the body is read or a service runs.
        account_requests_per_second: z.number().int().min(1).max(100_000).default(50),
        account_request_burst: z.number().int().min(1).max(1_000_000).default(200),
        // How long a web console session lasts after sign-in (no renewal: the holder signs in again).
        console_session_ttl_ms: z.number().int().min(60_000).max(86_400_000).default(3_600_000),
      })
      .strict()
      .default({
        listen: "127.0.0.1:8080",
        max_body_bytes: 2 ** 20,
        max_connections: 1024,
        idle_timeout_ms: 60_000,
        headers_timeout_ms: 10_000,
        request_timeout_ms: 30_000,
        max_buffered_bytes: 64 * 2 ** 20,
        max_connections_per_ip: 64,
        account_writes_per_second: 10,
        account_write_burst: 50,
        account_requests_per_second: 50,
        account_request_burst: 200,
        console_session_ttl_ms: 3_600_000,
      }),
    catalogue: z
      .object({ file: z.string().min(1).default(join(PACKAGE_ROOT, "catalogue/default.yaml")) })
      .strict()
      .default({ file: join(PACKAGE_ROOT, "catalogue/default.yaml") }),
    providers: z
      .record(
        z.string().regex(/^[a-z][a-z0-9_-]*$/, "provider ids are lower-case"),
        z.object({ api_key: z.string().min(1).optional() }).strict(),
      )
      .default({}),
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
    // HMAC secret authz signs each admission's billing metadata with and the meter verifies (both must share it).
    // Unset: read from signing.secret_file; on SQLite that file is created beside the database at first start.
    signing: z
      .object({
        secret: signingSecret.optional(),
        previous_secrets: secretList.default([]),
        secret_file: z.string().min(1).optional(),
      })
      .strict()
      .default({ previous_secrets: [] }),
    // mTLS for the Envoy-facing gRPC roles (authz 9001, meter 9002): per role, or once for both under tls.
    // tls.edge is the client side for `serve`'s local edge (where no Envoy runs): a certificate signed by the
    // client CA, and the CA that signed the roles' certificate (default: the client CA, one CA for both sides).
    // allow_plaintext: serve authz or the meter without tls.* on a non-loopback address (start-up refuses otherwise),
    // for networks that enforce mTLS themselves (a service-mesh sidecar terminating it in front of the role).
    tls: z
      .object({
        ...tlsFields,
        authz: tlsFiles.default({}),
        meter: tlsFiles.default({}),
        edge: edgeTls.default({}),
        allow_plaintext: z.boolean().default(false),
      })
      .strict()
      .superRefine(allOrNone)
      .default({ authz: {}, meter: {}, edge: {}, allow_plaintext: false }),
    // Alerts by webhook: deliveries leave from processes with the admin or meter role, never from authz's Check.
    webhooks: z
      .object({
        // CIDRs of private networks webhooks may reach (e.g. "10.1.0.0/16"; "127.0.0.0/8" for tests); by default
        // every private, loopback, link-local and reserved address is refused, so an account cannot make the control
        // plane POST into its own network.
        allowed_private_networks: z
          .preprocess(
            (v) =>
              typeof v === "string"
                ? v
                    .split(",")
                    .map((s) => s.trim())
                    .filter(Boolean)
                : v,
            z.array(z.string()),
          )
          .superRefine((cidrs, ctx) => {
            try {
              createTargetPolicy({ allowedPrivateNetworks: cidrs });
            } catch (error) {
              ctx.addIssue({
                code: z.ZodIssueCode.custom,
                message: (error as Error).message.replace(/^webhooks\.allowed_private_networks: /, ""),
              });
            }
          })
          .default([]),
        // One attempt's whole budget (connect, TLS, request, answer); a receiver slower than this is retried.
        timeout_ms: z.number().int().min(100).max(60_000).default(10_000),
        // How often each process looks for due deliveries.
        poll_interval_ms: z.number().int().min(10).max(60_000).default(1000),
        // Retry n waits about retry_base_ms × 2^(n-1) (half of it random), at most retry_max_ms; after max_attempts
        // attempts a delivery is marked failed.
        retry_base_ms: z.number().int().min(10).max(3_600_000).default(30_000),
        retry_max_ms: z.number().int().min(10).max(86_400_000).default(21_600_000),
        max_attempts: z.number().int().min(1).max(100).default(15),
        // Deliveries in flight per process.
        concurrency: z.number().int().min(1).max(256).default(8),
        // Deliveries of one account in flight at once, every process together: claims go round-robin across
        // accounts, so one account's stalled receivers hold at most this many slots.
        max_in_flight_per_account: z.number().int().min(1).max(256).default(4),
        // Pending deliveries one webhook may have; beyond it the newest are dropped (status dropped, the reason in
        // the delivery log, tollgate_webhook_deliveries_dropped_total).
        max_pending_per_webhook: z.number().int().min(1).max(1_000_000).default(1000),
        // A delivery still pending this long after its event is dropped the same way (the default retry schedule
        // ends well within it).
        max_pending_age_ms: z.number().int().min(60_000).max(7_776_000_000).default(259_200_000),
      })
      .strict()
      .default({
        allowed_private_networks: [],
        timeout_ms: 10_000,
        poll_interval_ms: 1000,
        retry_base_ms: 30_000,
        retry_max_ms: 21_600_000,
        max_attempts: 15,
        concurrency: 8,
        max_in_flight_per_account: 4,
        max_pending_per_webhook: 1000,
        max_pending_age_ms: 259_200_000,
      }),
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
  TOLLGATE_DATA_DIR: ["data", "dir"],
  TOLLGATE_REDIS_URL: ["redis", "url"],
  TOLLGATE_REDIS_FAIL_OPEN: ["redis", "fail_open"],
  TOLLGATE_REDIS_PREFIX: ["redis", "prefix"],
  TOLLGATE_REDIS_COMMAND_TIMEOUT_MS: ["redis", "command_timeout_ms"],
  TOLLGATE_REDIS_DURABLE: ["redis", "durable"],
  TOLLGATE_AUTHZ_LISTEN: ["authz", "listen"],
  TOLLGATE_METER_LISTEN: ["meter", "listen"],
  TOLLGATE_METER_RESERVATION_TTL_MS: ["meter", "reservation_ttl_ms"],
  TOLLGATE_METER_BATCH_MAX: ["meter", "batch_max"],
  TOLLGATE_METER_BATCH_WINDOW_MS: ["meter", "batch_window_ms"],
  TOLLGATE_METER_RETENTION_DAYS: ["meter", "retention_days"],
  TOLLGATE_METER_SPOOL_DIR: ["meter", "spool_dir"],
  TOLLGATE_CREDITS_PLATFORM_FEE_BPS: ["credits", "platform_fee_bps"],
  TOLLGATE_CREDITS_MAX_OPEN_RESERVATIONS_PER_ACCOUNT: ["credits", "max_open_reservations_per_account"],
  TOLLGATE_CREDITS_MAX_OPEN_RESERVATIONS_TOTAL: ["credits", "max_open_reservations_total"],
  TOLLGATE_ADMIN_LISTEN: ["admin", "listen"],
  TOLLGATE_ADMIN_MAX_BODY_BYTES: ["admin", "max_body_bytes"],
  TOLLGATE_ADMIN_MAX_CONNECTIONS: ["admin", "max_connections"],
  TOLLGATE_ADMIN_IDLE_TIMEOUT_MS: ["admin", "idle_timeout_ms"],
  TOLLGATE_ADMIN_HEADERS_TIMEOUT_MS: ["admin", "headers_timeout_ms"],
  TOLLGATE_ADMIN_REQUEST_TIMEOUT_MS: ["admin", "request_timeout_ms"],
  TOLLGATE_ADMIN_MAX_BUFFERED_BYTES: ["admin", "max_buffered_bytes"],
  TOLLGATE_ADMIN_MAX_CONNECTIONS_PER_IP: ["admin", "max_connections_per_ip"],
  TOLLGATE_ADMIN_ACCOUNT_WRITES_PER_SECOND: ["admin", "account_writes_per_second"],
  TOLLGATE_ADMIN_ACCOUNT_WRITE_BURST: ["admin", "account_write_burst"],
  TOLLGATE_ADMIN_ACCOUNT_REQUESTS_PER_SECOND: ["admin", "account_requests_per_second"],
  TOLLGATE_ADMIN_ACCOUNT_REQUEST_BURST: ["admin", "account_request_burst"],
  TOLLGATE_ADMIN_CONSOLE_SESSION_TTL_MS: ["admin", "console_session_ttl_ms"],
  TOLLGATE_CATALOGUE_FILE: ["catalogue", "file"],
  TOLLGATE_KEYS_POLL_INTERVAL_MS: ["keys", "poll_interval_ms"],
  TOLLGATE_LOG_LEVEL: ["log", "level"],
  TOLLGATE_METRICS_LISTEN: ["metrics", "listen"],
  TOLLGATE_SHUTDOWN_DRAIN_DELAY_MS: ["shutdown", "drain_delay_ms"],
  TOLLGATE_SIGNING_SECRET: ["signing", "secret"],
  TOLLGATE_SIGNING_PREVIOUS_SECRETS: ["signing", "previous_secrets"],
  TOLLGATE_SIGNING_SECRET_FILE: ["signing", "secret_file"],
  TOLLGATE_TLS_CERT_FILE: ["tls", "cert_file"],
  TOLLGATE_TLS_KEY_FILE: ["tls", "key_file"],
  TOLLGATE_TLS_CLIENT_CA_FILE: ["tls", "client_ca_file"],
  TOLLGATE_TLS_EDGE_CERT_FILE: ["tls", "edge", "cert_file"],
  TOLLGATE_TLS_EDGE_KEY_FILE: ["tls", "edge", "key_file"],
  TOLLGATE_TLS_EDGE_CA_FILE: ["tls", "edge", "ca_file"],
  TOLLGATE_TLS_EDGE_SERVER_NAME: ["tls", "edge", "server_name"],
  TOLLGATE_TLS_ALLOW_PLAINTEXT: ["tls", "allow_plaintext"],
  TOLLGATE_WEBHOOKS_ALLOWED_PRIVATE_NETWORKS: ["webhooks", "allowed_private_networks"],
  TOLLGATE_WEBHOOKS_TIMEOUT_MS: ["webhooks", "timeout_ms"],
  TOLLGATE_WEBHOOKS_POLL_INTERVAL_MS: ["webhooks", "poll_interval_ms"],
  TOLLGATE_WEBHOOKS_RETRY_BASE_MS: ["webhooks", "retry_base_ms"],
  TOLLGATE_WEBHOOKS_RETRY_MAX_MS: ["webhooks", "retry_max_ms"],
  TOLLGATE_WEBHOOKS_MAX_ATTEMPTS: ["webhooks", "max_attempts"],
  TOLLGATE_WEBHOOKS_CONCURRENCY: ["webhooks", "concurrency"],
  TOLLGATE_WEBHOOKS_MAX_IN_FLIGHT_PER_ACCOUNT: ["webhooks", "max_in_flight_per_account"],
  TOLLGATE_WEBHOOKS_MAX_PENDING_PER_WEBHOOK: ["webhooks", "max_pending_per_webhook"],
  TOLLGATE_WEBHOOKS_MAX_PENDING_AGE_MS: ["webhooks", "max_pending_age_ms"],
};

/**
 * Loads the configuration once at start-up: the YAML file (TOLLGATE_CONFIG or `file`), then environment variables
 * on top (TOLLGATE_*; provider credentials as TOLLGATE_PROVIDER_<ID>_API_KEY). A bad value throws a ConfigError
 * naming the field and its source, so start-up stops before anything listens.
 */
export function loadConfig(
  options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {},
): Config {
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
    // Secrets stay text even when they happen to be all digits.
    setPath(raw, path, path[0] === "signing" ? value : coerce(value));
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

/** The TLS files a gRPC role serves with (its own, else the shared ones), or undefined for plaintext. */
export function tlsFor(
  config: Config,
  role: "authz" | "meter",
): { certFile: string; keyFile: string; clientCaFile: string } | undefined {
  const own = config.tls[role];
  const files = own.cert_file ? own : config.tls;
  if (!files.cert_file || !files.key_file || !files.client_ca_file) return undefined;
  return { certFile: files.cert_file, keyFile: files.key_file, clientCaFile: files.client_ca_file };
}

/** The client side of mTLS toward one gRPC role: a certificate and key to present, the CA to verify the role by. */
export interface ClientTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** The name the role's certificate must carry, when it is not the host dialled. */
  serverName?: string;
}

/**
 * How the local edge reaches a role: undefined while the role serves plaintext, else tls.edge's files. A role on
 * mTLS with no tls.edge certificate is a ConfigError naming the field: the edge could not reach it at all.
 */
export function edgeTlsFor(config: Config, role: "authz" | "meter"): ClientTlsFiles | undefined {
  const server = tlsFor(config, role);
  if (!server) return undefined;
  const edge = config.tls.edge;
  if (!edge.cert_file || !edge.key_file) {
    throw new ConfigError(
      `config: tls.edge.cert_file: required when ${role} serves mTLS (tls.*) and the local edge runs in front of it (no envoy on PATH): ` +
        "the edge must present a client certificate signed by tls.client_ca_file, as Envoy does; set tls.edge.cert_file and tls.edge.key_file " +
        "(TOLLGATE_TLS_EDGE_CERT_FILE, TOLLGATE_TLS_EDGE_KEY_FILE), or run with --no-data-plane",
    );
  }
  return {
    certFile: edge.cert_file,
    keyFile: edge.key_file,
    caFile: edge.ca_file ?? server.clientCaFile,
    serverName: edge.server_name,
  };
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Refuses to start authz or the meter in plaintext on an address other machines can reach: authz hands provider
 * credentials to whoever calls it and the meter bills what it is sent. With tls.allow_plaintext (the network
 * enforces mTLS) it returns the exposed roles' addresses instead, for start-up to warn about.
 */
export function checkPlaintextListeners(config: Config, roles: readonly string[]): string[] {
  const exposed: string[] = [];
  for (const role of ["authz", "meter"] as const) {
    if (!roles.includes(role) || tlsFor(config, role)) continue;
    const listen = config[role].listen;
    if (isLoopbackHost(splitListen(listen).host)) continue;
    if (!config.tls.allow_plaintext) {
      throw new ConfigError(
        `config: tls.cert_file: required when ${role} listens on ${listen}, which is not loopback: ${role === "authz" ? "authz hands provider credentials to whoever calls it" : "the meter bills the access-log entries it is sent"}, ` +
          "so only Envoy may reach it, over mTLS; set tls.cert_file, tls.key_file and tls.client_ca_file (TOLLGATE_TLS_CERT_FILE, TOLLGATE_TLS_KEY_FILE, TOLLGATE_TLS_CLIENT_CA_FILE), " +
          "listen on 127.0.0.1, or set tls.allow_plaintext: true (TOLLGATE_TLS_ALLOW_PLAINTEXT=true) where the network already enforces mTLS (a service-mesh sidecar)",
      );
    }
    exposed.push(`${role} ${listen}`);
  }
  return exposed;
}
