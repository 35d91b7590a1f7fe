import { parseArgs, type ParseArgsConfig } from "node:util";
import { openStores, type Stores } from "../app/stores.js";
import { loadConfig, type Config } from "../config/config.js";
import { parseDuration } from "../domain/keys.js";
import type { Output } from "./output.js";

/** A mistake in how the command was called: usage is printed and the exit code is 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One CLI command: its arguments after the command word(s). */
export type Handler = (args: string[], out: Output) => Promise<void>;

const common = {
  json: { type: "boolean" },
  config: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

/** Runs node's parseArgs, turning its TypeError into a usage error with node's message. */
function strictly<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ""));
  }
}

/** Parses flags strictly (unknown flags are usage errors) with the common --json and --config. */
export function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O, positionals = 0) {
  const parsed = strictly(() =>
    parseArgs({ args, options: { ...common, ...options }, allowPositionals: positionals > 0, strict: true }),
  );
  if (parsed.positionals.length > positionals)
    throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

/** Returns a required flag's value or throws a usage error naming the flag. */
export function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(`${flag} is required`);
  return value;
}

/** Loads the configuration named by --config or TOLLGATE_CONFIG. */
export function configFrom(values: { config?: string | undefined }): Config {
  return loadConfig({ file: values.config });
}

/**
 * Runs `fn` with the stores open (migrated and seeded), closing them afterwards: for the commands that work on the
 * database itself (reconcile); management commands go through the admin API instead.
 */
export async function withStores<T>(
  values: { config?: string | undefined },
  fn: (stores: Stores) => Promise<T>,
): Promise<T> {
  const stores = await openStores(configFrom(values));
  try {
    return await fn(stores);
  } finally {
    await stores.db.close();
  }
}

/** Parses a duration flag, naming the flag in the error. */
export function durationFlag(text: string, flag: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}

/** Dispatches `group action …` to one of `actions`, with a usage error naming the choices. */
export function group(name: string, actions: Record<string, Handler>): Handler {
  return async (args, out) => {
    const [action, ...rest] = args;
    const handler = action === undefined ? undefined : actions[action];
    if (!handler)
      throw new UsageError(`unknown ${name} command "${action ?? ""}" (${Object.keys(actions).join(", ")})`);
    await handler(rest, out);
  };
}

/** ISO time or null, for JSON output of millisecond timestamps. */
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
