#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../adapters/sql/account-store.js";
import { ConfigError } from "../config/config.js";
import { UsageError, type Handler } from "./cli-kit.js";
import { createConsoleOutput, type Output } from "./output.js";

const USAGE = `tollgate: the Tollgate control plane

  tollgate serve [--role authz|meter|admin]... [--config FILE] [--mock-providers] [--no-data-plane]
  tollgate migrate
  tollgate accounts create --name NAME --plan basic|pro|scale
  tollgate accounts list
  tollgate keys create --account ID [--name NAME] [--expires-in 30d] [--models a,b] [--label env=prod]...
  tollgate keys list --account ID
  tollgate keys revoke KEY_ID
  tollgate keys rotate KEY_ID [--grace 1h]
  tollgate credits add --account ID --amount USD
  tollgate credits balance --account ID
  tollgate usage --account ID [--key ID] [--model M] [--since T] [--until T] [--daily] [--limit N]
  tollgate reconcile FILE            (replays Envoy's JSON access log; idempotent)

  tollgate plans list|create PLAN_ID --name N --rpm N --tpm N --tiers basic,premium|update PLAN_ID …|retire PLAN_ID
  tollgate models list|create MODEL_ID --provider P --tier T --input USD --output USD [--cached-input USD]
                  --context-window N --max-output N|update MODEL_ID [--input USD] …|retire MODEL_ID   (USD per 1M tokens)
  tollgate keys get|update KEY_ID [--rpm N] [--tpm N] [--models a,b | --all-models] [--label k=v]...
  tollgate accounts get|update ACCOUNT_ID [--name N] [--plan P] [--suspend|--resume]
  tollgate credits ledger --account ID
  tollgate usage summary [--group-by key,model,day] …   tollgate usage export [--format csv|jsonl] …
  tollgate audit [--limit N]
  tollgate admin-tokens create --operator|--account ID [--name N]   (prints the tga_ token once)
  tollgate admin-tokens list|revoke TOKEN_ID
  With TOLLGATE_ADMIN_URL (and TOLLGATE_ADMIN_TOKEN) set, accounts, keys, credits, usage, plans, models and audit go
  through the admin API; without it they use the database directly.

  tollgate health --address HOST:PORT   (grpc.health.v1 of the authz or meter role; exit 0 when SERVING)

Every command takes --json (machine-readable output) and --config FILE (or TOLLGATE_CONFIG).`;

/**
 * Every top-level command; each lives in its own module under commands/ and is loaded only when called, so a quick
 * `keys list` does not pay for the tokenizer and gRPC that `serve` needs.
 */
const COMMANDS: Record<string, () => Promise<Handler>> = {
  serve: async () => (await import("./commands/serve.js")).serve,
  migrate: async () => (await import("./commands/serve.js")).migrateCommand,
  accounts: async () => (await import("./commands/accounts.js")).accounts,
  keys: async () => (await import("./commands/keys.js")).keys,
  credits: async () => (await import("./commands/credits.js")).credits,
  usage: async () => (await import("./commands/usage.js")).usage,
  reconcile: async () => (await import("./commands/reconcile.js")).reconcile,
  health: async () => (await import("./commands/health.js")).health,
  plans: async () => (await import("./commands/admin-api.js")).plansApi,
  models: async () => (await import("./commands/admin-api.js")).modelsApi,
  audit: async () => (await import("./commands/admin-api.js")).auditApi,
  "admin-tokens": async () => (await import("./commands/admin-tokens.js")).adminTokens,
};

/** With TOLLGATE_ADMIN_URL set these go through the admin API (Connect client) instead of the database. */
const VIA_ADMIN_API: Record<string, () => Promise<Handler>> = {
  accounts: async () => (await import("./commands/admin-api.js")).accountsApi,
  keys: async () => (await import("./commands/admin-api.js")).keysApi,
  credits: async () => (await import("./commands/admin-api.js")).creditsApi,
  usage: async () => (await import("./commands/admin-api.js")).usageApi,
};

/** Commands the direct-database modules lack, served by the admin-API module in-process (same service code). */
const ADMIN_ONLY_ACTIONS: Record<string, readonly string[]> = {
  accounts: ["get", "update"],
  keys: ["get", "update"],
  credits: ["ledger"],
  usage: ["summary", "export"],
};

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function run(argv: string[], out: Output): Promise<number> {
  const [command, ...rest] = argv;
  out.json = rest.includes("--json");
  if (!command || command === "help" || command === "--help" || command === "-h") {
    out.info(USAGE);
    return command ? 0 : 2;
  }
  try {
    const adminAction = ADMIN_ONLY_ACTIONS[command]?.includes(rest[0] ?? "") ?? false;
    const load = (process.env.TOLLGATE_ADMIN_URL || adminAction ? VIA_ADMIN_API[command] : undefined) ?? COMMANDS[command];
    if (!load) throw new UsageError(`unknown command "${command}"`);
    await (await load())(rest, out);
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof UsageError) {
      out.error(`tollgate: ${message}\n\n${USAGE}`, "usage", message);
      return 2;
    }
    const code = error instanceof ConfigError ? "config" : error instanceof NotFoundError ? "not_found" : ((error as { cliCode?: string }).cliCode ?? "internal");
    out.error(`tollgate: ${message}`, code, message);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return realpathSync(process.argv[1] ?? "") === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  run(process.argv.slice(2), createConsoleOutput()).then((code) => {
    process.exitCode = code;
  });
}
