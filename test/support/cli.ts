import { execFile, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";

const exec = promisify(execFile);

/** The built CLI (`npm run build`), as CI and operators run it. */
export const BUILT_CLI = join(PACKAGE_ROOT, "dist/cli/main.js");

/** How a CLI run ended. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; resolves with exit code, stdout and stderr instead of throwing on a non-zero exit. */
export async function runBuiltCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [BUILT_CLI, ...args], { env, maxBuffer: 64 * 2 ** 20 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Starts the CLI from source as its own single node process (no npx wrapper), so a signal hits the server itself. */
export function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...SERVE_NODE_FLAGS, "--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Runs the CLI from source to completion; resolves with exit code, stdout and stderr. */
export async function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  const child = spawnCli(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const code = await new Promise<number>((resolve) => child.on("exit", (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

/** `tollgate serve --role meter` from source, listening on `address`. */
export interface MeterProcess {
  child: ChildProcess;
  address: string;
  stderr(): string;
  exited: Promise<void>;
}

/** Starts `serve --role meter` on 127.0.0.1:`port` and resolves once it logs that it listens. */
export async function startMeterProcess(port: number, env: Record<string, string>): Promise<MeterProcess> {
  const child = spawnCli(["serve", "--role", "meter"], { ...env, TOLLGATE_METER_LISTEN: `127.0.0.1:${port}` });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("meter (Envoy access log gRPC) on")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`meter exited (${code}) before listening: ${out}${err}`)));
  });
  return { child, address: `127.0.0.1:${port}`, stderr: () => err, exited };
}

/** Polls `ok` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 25) {
    if (await ok()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A built `tollgate serve` running in its own process. */
export interface ServeProcess {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts the built CLI's `serve` with `args` and `env` (the whole environment), resolving once its stdout holds
 * `readyWhen` (by default the line saying where the admin API listens).
 */
export async function startServe(
  args: string[],
  env: NodeJS.ProcessEnv,
  readyWhen = "local operator credential in",
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, BUILT_CLI, "serve", ...args], {
    cwd: PACKAGE_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stderr!.on("data", (d) => (text += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 30 s: ${text}`)), 30_000);
    child.stdout!.on("data", (d) => {
      text += d;
      if (text.includes(readyWhen)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}) before it was ready: ${text}`));
    });
  });
  return {
    child,
    output: () => text,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
