import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import { connectAuthz, type AuthzClient } from "./authz-client.js";

/** A `tollgate serve --role authz` process of its own, and a Check client connected to it. */
export interface AuthzReplica {
  child: ChildProcess;
  client: AuthzClient;
  /** host:port it listens on. */
  address: string;
  /** Everything it printed (for a failure's message). */
  output: string[];
}

const CLI = join(PACKAGE_ROOT, "src/cli/main.ts");

/**
 * Starts `tollgate serve --role authz` as its own process (from source through tsx) on a free port and waits until it
 * listens. `env` adds to this process' environment: the store, Redis and signing secret, and a credential for the
 * test model's provider (not --mock-providers, which would also start a mock server on a fixed port).
 */
export async function startAuthzReplica(env: Record<string, string>): Promise<AuthzReplica> {
  // With the node flags serve wants, as the image runs it.
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, "--import", "tsx", CLI, "serve", "--role", "authz"], {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, ...env, TOLLGATE_AUTHZ_LISTEN: "127.0.0.1:0", TOLLGATE_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start:\n${output.join("")}`)), 60_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      output.push(String(chunk));
      const match = /"port":(\d+)[^\n]*"msg":"authz listening"/.exec(output.join(""));
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.stderr!.on("data", (chunk: Buffer) => output.push(String(chunk)));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited (${code}):\n${output.join("")}`));
    });
  });
  return { child, client: connectAuthz(`127.0.0.1:${port}`), address: `127.0.0.1:${port}`, output };
}

/** Closes the client and stops the process with SIGTERM (its clean stop), waiting for it to exit. */
export async function stopAuthzReplica(replica: AuthzReplica): Promise<void> {
  replica.client.close();
  if (replica.child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    replica.child.once("exit", () => resolve());
    replica.child.kill("SIGTERM");
  });
}
