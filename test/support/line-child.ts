import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";

/** Every helper process started here and not yet seen to exit: a suite stops them when it ends, passed or failed. */
const children = new Set<ChildProcess>();

/** Stops (SIGKILL) every helper still running: for a suite's afterAll, where a failed expectation skipped its stop. */
export async function killChildren(): Promise<void> {
  await Promise.all(
    [...children].map(async (child) => {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }),
  );
}

/**
 * A helper process of the security suites (`node SERVE_NODE_FLAGS --import tsx test/security/SCRIPT ...args`) that
 * answers stdin lines with stdout lines. `background` runs it under SCHED_IDLE (util-linux's chrt): it gets a core
 * only when nothing else wants one, and a waking thread of any other process preempts it at once (a nice value only
 * weighs shares, so an attacker client at nice 10 still held the core the server's event loop woke on for a slice at
 * a time). A child that fails to start or exits fails whatever waits for its next line, naming it. `flags` replaces
 * serve's node flags.
 */
export function startChild(
  script: string,
  args: string[],
  background = false,
  flags: readonly string[] = SERVE_NODE_FLAGS,
) {
  // Every helper runs node with serve's flags unless `flags` replaces them: a server, to compare like with like with
  // authz, and the clients, so that the side measuring cannot fall into the garbage-collection regime the flags avoid.
  const command = [
    process.execPath,
    ...flags,
    "--import",
    "tsx",
    join(import.meta.dirname, "../security", script),
    ...args,
  ];
  const child = background
    ? spawn("chrt", ["--idle", "0", ...command], { stdio: ["pipe", "pipe", "inherit"] })
    : spawn(command[0]!, command.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  children.add(child);
  const lines: string[] = [];
  const waiters: Array<{ resolve: (line: string) => void; reject: (error: Error) => void }> = [];
  let ended: Error | undefined;
  const end = (error: Error) => {
    ended ??= error;
    children.delete(child);
    for (const waiter of waiters.splice(0)) waiter.reject(ended);
  };
  child.on("error", (error) =>
    end(
      new Error(`${script}${background ? " (under chrt --idle: util-linux's chrt is needed)" : ""}: ${error.message}`),
    ),
  );
  // "close", not "exit": its last lines have been read by then.
  child.on("close", (code, signal) => end(new Error(`${script} exited (${signal ?? code})`)));
  // A write to a child that has exited is that exit's failure, reported above.
  child.stdin.on("error", () => {});
  let partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    partial += chunk;
    for (let at = partial.indexOf("\n"); at !== -1; at = partial.indexOf("\n")) {
      lines.push(partial.slice(0, at));
      partial = partial.slice(at + 1);
      waiters.shift()?.resolve(lines.at(-1)!);
    }
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => (ended ? reject(ended) : waiters.push({ resolve, reject })));
  const ask = (line: string) => {
    const answer = nextLine();
    child.stdin.write(`${line}\n`);
    return answer;
  };
  const stop = async () => {
    if (!children.has(child)) return;
    const exited = once(child, "close");
    child.stdin.end();
    await exited;
  };
  return { child, lines, nextLine, ask, stop };
}
