#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../domain/errors.js";
import { ConfigError } from "../config/config.js";
import { UsageError, type Handler } from "./cli-kit.js";
import { commandHelp, knownCommand, overview } from "./help.js";
import { createConsoleOutput, type Output } from "./output.js";

/**
 * Every top-level command; each lives in its own module under commands/ and is loaded only when called, so a quick
 * `keys list` does not pay for the tokenizer and gRPC that `serve` needs. Management commands are admin-API clients.
 */
const COMMANDS: Record<string, () => Promise<Handler>> = {
  serve: async () => (await import("./commands/serve.js")).serve,
  migrate: async () => (await import("./commands/serve.js")).migrateCommand,
  accounts: async () => (await import("./commands/admin-api.js")).accountsApi,
  keys: async () => (await import("./commands/admin-api.js")).keysApi,
  credits: async () => (await import("./commands/admin-api.js")).creditsApi,
  usage: async () => (await import("./commands/admin-api.js")).usageApi,
  reconcile: async () => (await import("./commands/reconcile.js")).reconcile,
  envoy: async () => (await import("./commands/envoy.js")).envoy,
  health: async () => (await import("./commands/health.js")).health,
  plans: async () => (await import("./commands/admin-api.js")).plansApi,
  models: async () => (await import("./commands/admin-api.js")).modelsApi,
  audit: async () => (await import("./commands/admin-api.js")).auditApi,
  "admin-tokens": async () => (await import("./commands/admin-tokens.js")).adminTokens,
  webhooks: async () => (await import("./commands/webhooks.js")).webhooksApi,
};

/** Whether the arguments ask for help (before any `--`, which ends the flags). */
function wantsHelp(args: string[]): boolean {
  for (const arg of args) {
    if (arg === "--") return false;
    if (arg === "--help" || arg === "-h") return true;
  }
  return false;
}

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function run(argv: string[], out: Output): Promise<number> {
  const [command, ...rest] = argv;
  out.json = rest.includes("--json");
  if (!command || command === "help" || command === "--help" || command === "-h") {
    out.info(command === "help" && rest[0] && knownCommand(rest[0]) ? commandHelp(rest[0], rest[1]) : overview());
    return command ? 0 : 2;
  }
  if (knownCommand(command) && wantsHelp(rest)) {
    out.info(commandHelp(command, rest[0]));
    return 0;
  }
  try {
    const load = COMMANDS[command];
    if (!load) throw new UsageError(`unknown command "${command}"`);
    await (await load())(rest, out);
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof UsageError) {
      const help = knownCommand(command) ? commandHelp(command, rest[0]) : overview();
      out.error(`tollgate: ${message}\n\n${help}`, "usage", message);
      return 2;
    }
    const code =
      error instanceof ConfigError
        ? "config"
        : error instanceof NotFoundError
          ? "not_found"
          : ((error as { cliCode?: string }).cliCode ?? "internal");
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
