// Set-up for the benches that drive a built tollgate: the CLI is an admin-API client (management commands never write
// the database), so a bench that needs accounts, keys or credits starts `tollgate serve --role admin` on its own
// store and port, runs the CLI against it with the local operator credential serve writes, and stops it again before
// anything is measured.
//
//   const admin = await startAdminServer({
//     cli: "dist/cli/main.js", env: { TOLLGATE_DATABASE_URL: "sqlite:/tmp/x/bench.db" }, dataDir: "/tmp/x/data",
//     nodeFlags: SERVE_NODE_FLAGS,
//   });
//   const account = admin.cli("accounts", "create", "--name", "bench", "--plan", "scale");   // parsed --json output
//   await admin.stop();
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** A free TCP port on 127.0.0.1 (bound and released; good enough for a bench on one machine). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `tollgate serve --role admin` with `env` (which names the store) and `dataDir` (where it writes the local
 * operator credential), waits until /healthz answers and the credential exists, and returns `cli(...args)`, which
 * runs the built CLI with `--json` against that server and returns its parsed output, and `stop()`.
 */
export async function startAdminServer({ cli, env, dataDir, nodeFlags, timeoutMs = 30_000 }) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const serverEnv = { ...process.env, ...env, TOLLGATE_DATA_DIR: dataDir, TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${port}` };
  // No metrics listener of its own: the targets measured later may want the configured one.
  delete serverEnv.TOLLGATE_METRICS_LISTEN;
  // With the node flags serve wants (`nodeFlags`: this tree's SERVE_NODE_FLAGS, also for a baseline tree's CLI), as
  // the image runs it.
  const child = spawn(process.execPath, [...nodeFlags, cli, "serve", "--role", "admin"], {
    env: serverEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const credential = join(dataDir, "admin-token");

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`tollgate serve --role admin exited before it was ready:\n${output.slice(-3000)}`);
    if (existsSync(credential) && (await healthy(url))) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`tollgate serve --role admin was not ready within ${timeoutMs} ms:\n${output.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const token = readFileSync(credential, "utf8").trim();
  const cliEnv = {
    ...process.env,
    ...env,
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_ADMIN_URL: url,
    TOLLGATE_ADMIN_TOKEN: token,
  };

  return {
    url,
    /** Runs `tollgate ARGS --json` against this server; throws with the CLI's output unless it exits 0. */
    cli(...args) {
      const run = spawnSync(process.execPath, [cli, ...args, "--json"], { env: cliEnv, encoding: "utf8" });
      if (run.status !== 0)
        throw new Error(`tollgate ${args.join(" ")} failed (${run.status}): ${run.stderr || run.stdout}`);
      return JSON.parse(run.stdout);
    },
    /** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone (so the store is free for the next one). */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timeout = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timeout);
    },
  };
}

async function healthy(url) {
  try {
    return (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}
