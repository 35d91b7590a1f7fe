#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../adapters/sql/account-store.js";
import { ConfigError } from "../config/config.js";
import { UsageError, type Handler } from "./cli-kit.js";
import { accounts } from "./commands/accounts.js";
import { keys } from "./commands/keys.js";
import { migrateCommand, serve } from "./commands/serve.js";
import { createConsoleOutput, type Output } from "./output.js";

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

/** Every top-level command; each lives in its own module under commands/. */
const COMMANDS: Record<string, Handler> = { serve, migrate: migrateCommand, accounts, keys };

/** Runs the CLI with `argv` (without node and script); returns the exit code. */
export async function run(argv: string[], out: Output): Promise<number> {
  const [command, ...rest] = argv;
  out.json = rest.includes("--json");
  if (!command || command === "help" || command === "--help" || command === "-h") {
    out.info(USAGE);
    return command ? 0 : 2;
  }
  try {
    const handler = COMMANDS[command];
    if (!handler) throw new UsageError(`unknown command "${command}"`);
    await handler(rest, out);
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof UsageError) {
      out.error(`tollgate: ${message}\n\n${USAGE}`, "usage", message);
      return 2;
    }
    const code = error instanceof ConfigError ? "config" : error instanceof NotFoundError ? "not_found" : "internal";
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
