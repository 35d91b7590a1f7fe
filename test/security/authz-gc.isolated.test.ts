import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { CheckRequestSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { envoyCheckRequest } from "../support/authz-client.js";
import { BODY_LIMIT, bodyOfSize } from "./authz-support.js";

/** How long the attack runs before and while it is measured. */
const WARM_MS = 1_500;
const MEASURE_MS = 5_000;
const LOOPS = 4;
/**
 * At most one full collection per this many 1 MiB Checks. Measured on node-svc: serve's old flags (the memory reducer
 * off only) ran one every 12 Checks, 100-108 in 8 s, in every run; with the 256 MB floor none ran.
 */
const CHECKS_PER_FULL_COLLECTION = 100;

const processes: ChildProcessWithoutNullStreams[] = [];
let dir: string | undefined;
afterAll(() => {
  for (const child of processes) child.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A helper of this suite (`node FLAGS --import tsx SCRIPT ...args`) whose stdout is read line by line. */
function start(script: string, args: string[], flags: readonly string[]) {
  const child = spawn(process.execPath, [...flags, "--import", "tsx", join(import.meta.dirname, script), ...args]);
  processes.push(child);
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  let partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    partial += chunk;
    for (let at = partial.indexOf("\n"); at !== -1; at = partial.indexOf("\n")) {
      const line = partial.slice(0, at);
      partial = partial.slice(at + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      if (lines.length > 0) return resolve(lines.shift()!);
      waiting.push(resolve);
      child.once("exit", (code) => reject(new Error(`${script} exited (${code})`)));
    });
  const ask = async (line: string) => {
    child.stdin.write(`${line}\n`);
    return JSON.parse(await next());
  };
  return { child, next, ask };
}

// V8 counts the ArrayBuffer memory a process allocated since its last full collection against the old generation's
// limit. Above a heap of tens of MB (authz holds the tokenizer's tables), V8's own limit left less headroom than a few
// 1 MiB Checks allocate between young-generation collections, so authz ran full collections back to back, each a
// pause of its event loop (README, Operations, "V8 flags for serve"): one tenant's large bodies held up every Check.
describe("authz's event loop under a stream of 1 MiB Checks, run with serve's node flags", () => {
  it(`runs at most one full garbage collection per ${CHECKS_PER_FULL_COLLECTION} Checks`, async () => {
    dir = mkdtempSync(join(tmpdir(), "tollgate-gc-"));
    const frames: Buffer[] = [];
    for (let i = 0; i < LOOPS; i++) {
      const body = bodyOfSize(
        BODY_LIMIT - 1,
        '{"model":"gpt-5.5","messages":[{"role":"user","content":"',
        `${i}`,
        '"}]}',
      );
      const request = envoyCheckRequest({ headers: { authorization: "Bearer tg_x" }, body, asBytes: true });
      const bytes = toBinary(CheckRequestSchema, request);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      frames.push(length, Buffer.from(bytes));
    }
    const file = join(dir, "requests.bin");
    writeFileSync(file, Buffer.concat(frames));

    const server = start("authz-gc-server.ts", [], SERVE_NODE_FLAGS);
    const port = Number(await server.next());
    const attack = start(
      "authz-attack-loop.ts",
      [`127.0.0.1:${port}`, file, String(LOOPS), String(60_000)],
      SERVE_NODE_FLAGS,
    );
    expect(await attack.next()).toBe("running");
    await new Promise((resolve) => setTimeout(resolve, WARM_MS));
    const before = { server: await server.ask("count"), attack: await attack.ask("count") };
    await new Promise((resolve) => setTimeout(resolve, MEASURE_MS));
    const after = { server: await server.ask("count"), attack: await attack.ask("count") };
    const answered = after.attack.answered - before.attack.answered;
    const full = after.server.full - before.server.full;
    console.log(
      `1 MiB Checks with ${SERVE_NODE_FLAGS.join(" ")}: ${answered} answered in ${MEASURE_MS / 1000} s, ` +
        `${full} full collections, heap ${after.server.heapMb.toFixed(0)} MB`,
    );
    expect(after.attack.failed, after.attack.errors.join("; ")).toBe(0);
    expect(answered, "Checks answered while measured").toBeGreaterThanOrEqual(2 * CHECKS_PER_FULL_COLLECTION);
    expect(full, `full collections during ${answered} Checks`).toBeLessThanOrEqual(
      Math.floor(answered / CHECKS_PER_FULL_COLLECTION),
    );
    attack.child.stdin.end();
    server.child.stdin.end();
    await Promise.all([once(attack.child, "exit"), once(server.child, "exit")]);
  }, 60_000);
});
