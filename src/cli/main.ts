#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from "node:util";
import { NotFoundError } from "../adapters/sql/account-store.js";
import { migrate, openDatabase } from "../adapters/sql/database.js";
import { openStores, startControlPlane, type Role } from "../app/control-plane.js";
import { ConfigError, loadConfig, type Config } from "../config/config.js";
import { parseDuration, type KeyRecord } from "../domain/keys.js";
import { createLogger } from "../logging.js";
import { printTable, type Output } from "./output.js";

/** A mistake in how the command was called: usage is printed and the exit code is 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = `tollgate: the Tollgate control plane

  tollgate serve [--role authz|meter|admin]... [--config FILE] [--mock-providers]
  tollgate migrate
  tollgate accounts create --name NAME --plan basic|pro|scale
  tollgate accounts list
  tollgate keys create --account ID [--name NAME] [--expires-in 30d] [--models a,b] [--label env=prod]...
  tollgate keys list --account ID
  tollgate keys revoke KEY_ID
  tollgate keys rotate KEY_ID [--grace 1h]

Every command takes --json (machine-readable output) and --config FILE (or TOLLGATE_CONFIG).`;

type Handler = (args: string[], out: Output) => Promise<void>;

const common = {
  json: { type: "boolean" },
  config: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O, positionals = 0) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...common, ...options }, allowPositionals: positionals > 0, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ""));
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(`${flag} is required`);
  return value;
}

function configFrom(values: { config?: string | undefined }): Config {
  return loadConfig({ file: values.config });
}

function keyView(key: KeyRecord) {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    prefix: key.displayPrefix,
    labels: key.labels,
    models: key.allowedModels,
    expires_at: key.expiresAt === null ? null : new Date(key.expiresAt).toISOString(),
    revoked_at: key.revokedAt === null ? null : new Date(key.revokedAt).toISOString(),
    created_at: new Date(key.createdAt).toISOString(),
  };
}

async function withStores<T>(values: { config?: string | undefined }, fn: (stores: Awaited<ReturnType<typeof openStores>>) => Promise<T>): Promise<T> {
  const stores = await openStores(configFrom(values));
  try {
    return await fn(stores);
  } finally {
    await stores.db.close();
  }
}

const commands: Record<string, Handler> = {
  async serve(args, out) {
    const { values } = parse(args, { role: { type: "string", multiple: true }, "mock-providers": { type: "boolean" } });
    const roles = (values.role ?? ["authz", "meter", "admin"]).flatMap((r) => r.split(","));
    for (const role of roles) if (!["authz", "meter", "admin"].includes(role)) throw new UsageError(`--role must be authz, meter or admin, not "${role}"`);
    const config = configFrom(values);
    const logger = createLogger({ level: config.log.level });
    const plane = await startControlPlane(config, { roles: roles as Role[], logger, mockProviders: values["mock-providers"] });
    out.info(`tollgate: serving ${roles.join(", ")} on ${config.database.url.startsWith("sqlite:") ? "the embedded SQLite store" : "PostgreSQL"}`);
    if (plane.authz) out.info(`tollgate: authz (Envoy ext_authz gRPC) on ${config.authz.listen}`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        out.info(`tollgate: ${signal}: draining`);
        plane.close().then(resolve, resolve);
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
  },

  async migrate(args, out) {
    const { values } = parse(args, {});
    const config = configFrom(values);
    const db = await openDatabase(config.database.url);
    try {
      const applied = await migrate(db);
      out.result({ applied }, () => (applied.length ? `applied ${applied.join(", ")}` : "schema is up to date"));
    } finally {
      await db.close();
    }
  },

  async accounts(args, out) {
    const [action, ...rest] = args;
    if (action === "create") {
      const { values } = parse(rest, { name: { type: "string" }, plan: { type: "string" } });
      const name = required(values.name, "--name");
      const plan = required(values.plan, "--plan");
      const account = await withStores(values, (s) => s.accounts.create({ name, planId: plan }));
      out.result({ id: account.id, name: account.name, plan: account.planId }, () => `created account ${account.id} (${account.name}, plan ${account.planId})`);
    } else if (action === "list") {
      const { values } = parse(rest, {});
      const accounts = await withStores(values, (s) => s.accounts.list());
      const rows = accounts.map((a) => ({ id: a.id, name: a.name, plan: a.planId, suspended: a.suspended }));
      out.result(rows, () => printTable(rows));
    } else {
      throw new UsageError(`unknown accounts command "${action ?? ""}" (create, list)`);
    }
  },

  async keys(args, out) {
    const [action, ...rest] = args;
    switch (action) {
      case "create": {
        const { values } = parse(rest, {
          account: { type: "string" },
          name: { type: "string" },
          "expires-in": { type: "string" },
          models: { type: "string" },
          label: { type: "string", multiple: true },
        });
        const accountId = required(values.account, "--account");
        let expiresAt: number | null = null;
        if (values["expires-in"] !== undefined) expiresAt = Date.now() + durationFlag(values["expires-in"], "--expires-in");
        const models = values.models === undefined ? null : values.models.split(",").map((m) => m.trim()).filter(Boolean);
        if (models !== null && models.length === 0) throw new UsageError("--models needs at least one model id");
        const labels: Record<string, string> = {};
        for (const label of values.label ?? []) {
          const eq = label.indexOf("=");
          if (eq <= 0) throw new UsageError(`--label must be key=value, not "${label}"`);
          labels[label.slice(0, eq)] = label.slice(eq + 1);
        }
        const issued = await withStores(values, (s) => s.keys.create({ accountId, name: values.name, expiresAt, allowedModels: models, labels }));
        out.result({ ...keyView(issued.key), secret: issued.secret }, () =>
          `created key ${issued.key.id}\n\n  ${issued.secret}\n\nThis secret is shown once; store it now.`,
        );
        return;
      }
      case "list": {
        const { values } = parse(rest, { account: { type: "string" } });
        const accountId = required(values.account, "--account");
        const keys = await withStores(values, async (s) => {
          if (!(await s.accounts.get(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
          return s.keys.listByAccount(accountId);
        });
        const rows = keys.map(keyView);
        out.result(rows, () =>
          printTable(rows.map((k) => ({ id: k.id, name: k.name, prefix: k.prefix + "…", expires: k.expires_at ?? "-", revoked: k.revoked_at ?? "-" }))),
        );
        return;
      }
      case "revoke": {
        const { values, positionals } = parse(rest, {}, 1);
        const id = required(positionals[0], "KEY_ID");
        const key = await withStores(values, (s) => s.keys.revoke(id));
        out.result(keyView(key), () => `revoked key ${key.id}`);
        return;
      }
      case "rotate": {
        const { values, positionals } = parse(rest, { grace: { type: "string" } }, 1);
        const id = required(positionals[0], "KEY_ID");
        const grace = values.grace === undefined ? 0 : durationFlag(values.grace, "--grace");
        const issued = await withStores(values, (s) => s.keys.rotate(id, grace));
        out.result(
          { ...keyView(issued.key), secret: issued.secret, previous_secret_valid_until: issued.key.previousSecretExpiresAt === null ? null : new Date(issued.key.previousSecretExpiresAt).toISOString() },
          () => `rotated key ${issued.key.id}${grace ? ` (old secret valid for ${values.grace})` : " (old secret rejected from now on)"}\n\n  ${issued.secret}\n\nThis secret is shown once; store it now.`,
        );
        return;
      }
      default:
        throw new UsageError(`unknown keys command "${action ?? ""}" (create, list, revoke, rotate)`);
    }
  },
};

function durationFlag(text: string, flag: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function run(argv: string[], out: Output): Promise<number> {
  const [command, ...rest] = argv;
  const json = rest.includes("--json");
  out.json = json;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    out.info(USAGE);
    return command ? 0 : 2;
  }
  const handler = commands[command];
  try {
    if (!handler) throw new UsageError(`unknown command "${command}"`);
    await handler(rest, out);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      out.error(`tollgate: ${error.message}\n\n${USAGE}`, "usage", error.message);
      return 2;
    }
    if (error instanceof ConfigError || error instanceof NotFoundError) {
      out.error(`tollgate: ${error.message}`, error instanceof ConfigError ? "config" : "not_found", error.message);
      return 1;
    }
    out.error(`tollgate: ${(error as Error).message}`, "internal", (error as Error).message);
    return 1;
  }
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain || process.argv[1]?.endsWith("/tollgate")) {
  const { createConsoleOutput } = await import("./output.js");
  run(process.argv.slice(2), createConsoleOutput()).then((code) => {
    process.exitCode = code;
  });
}
