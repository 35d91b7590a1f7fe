import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.js";

const run = promisify(execFile);

/** A throwaway PostgreSQL server the failure drills may stop and restart (never the machine's shared one). */
export interface PostgresInstance {
  url: string;
  port: number;
  /** Stops the server: "fast" disconnects every client (an operator's restart), "immediate" is a crash. */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
  /** Stops it if running and deletes its data directory. */
  destroy(): Promise<void>;
}

/** The PostgreSQL server binaries: TOLLGATE_TEST_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin with initdb. */
export function postgresBinDir(): string | undefined {
  const env = process.env.TOLLGATE_TEST_PG_BINDIR;
  if (env) return env;
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], "bin") : undefined;
}

/**
 * initdb + pg_ctl start on a free port in a temporary directory (about 1.5 s). PostgreSQL refuses to run as root,
 * so as root the commands run as the `postgres` user through runuser and the directory is handed to that user.
 * fsync is off: the drills prove connection loss and restarts, not the server's own crash durability.
 */
export async function startPostgresInstance(): Promise<PostgresInstance> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("no PostgreSQL server binaries (set TOLLGATE_TEST_PG_BINDIR)");
  const dir = mkdtempSync(join(tmpdir(), "tollgate-pg-"));
  const root = userInfo().uid === 0;
  if (root) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const as = (cmd: string, args: string[]) =>
    root ? run("runuser", ["-u", "postgres", "--", join(bin, cmd), ...args]) : run(join(bin, cmd), args);
  const data = join(dir, "data");
  const port = await freePort();
  await as("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -F`;
  let running = false;
  const instance: PostgresInstance = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      await as("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "server.log"), "-w", "-t", "20", "start"]);
      running = true;
    },
    async stop(mode = "fast") {
      await as("pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "20", "stop"]);
      running = false;
    },
    async destroy() {
      if (running) await instance.stop("immediate").catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await instance.start();
  return instance;
}
