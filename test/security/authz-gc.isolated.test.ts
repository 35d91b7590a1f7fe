import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { envoyCheckRequest } from "../support/authz-client.js";
import { killChildren, startChild } from "../support/line-child.js";
import { BODY_LIMIT, bodyOfSize, framedRequests } from "./authz-support.js";

/** How long the attack runs before and while it is measured. */
const WARM_MS = 1_500;
const MEASURE_MS = 5_000;
const LOOPS = 4;
/** The server's node flags: serve's, unless the environment names others. */
const FLAGS = process.env.TOLLGATE_TEST_GC_NODE_FLAGS?.split(" ").filter(Boolean) ?? SERVE_NODE_FLAGS;
/** At most one full collection per this many 1 MiB Checks (README, Operations, "V8 flags for serve": figures). */
const CHECKS_PER_FULL_COLLECTION = 100;

let dir: string | undefined;
afterAll(async () => {
  await killChildren();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Without serve's old-generation floor, authz ran full collections back to back under a stream of 1 MiB Checks, each
// a pause of its event loop, so one tenant's large bodies held up every Check (README, Operations, "V8 flags for
// serve", has why). This model of authz's event loop (its heap, and Checks lifted as authz lifts them) fell into it in
// every run; `TOLLGATE_TEST_GC_NODE_FLAGS` (space-separated) runs it with other flags, to see that.
describe("authz's event loop under a stream of 1 MiB Checks, run with serve's node flags", () => {
  it(`runs at most one full garbage collection per ${CHECKS_PER_FULL_COLLECTION} Checks`, async () => {
    dir = mkdtempSync(join(tmpdir(), "tollgate-gc-"));
    const requests = Array.from({ length: LOOPS }, (_, i) =>
      envoyCheckRequest({
        headers: { authorization: "Bearer tg_x" },
        body: bodyOfSize(BODY_LIMIT - 1, '{"model":"gpt-5.5","messages":[{"role":"user","content":"', `${i}`, '"}]}'),
        asBytes: true,
      }),
    );
    const file = join(dir, "requests.bin");
    writeFileSync(file, framedRequests(requests));

    const server = startChild("authz-gc-server.ts", [], false, FLAGS);
    const port = Number(await server.nextLine());
    const attack = startChild("authz-attack-loop.ts", [`127.0.0.1:${port}`, file, String(LOOPS), String(60_000)]);
    expect(await attack.nextLine()).toBe("running");
    const counts = async () => ({
      server: JSON.parse(await server.ask("count")) as { full: number; heapMb: number },
      attack: JSON.parse(await attack.ask("count")) as { answered: number; failed: number; errors: string[] },
    });
    await new Promise((resolve) => setTimeout(resolve, WARM_MS));
    const before = await counts();
    await new Promise((resolve) => setTimeout(resolve, MEASURE_MS));
    const after = await counts();
    const answered = after.attack.answered - before.attack.answered;
    const full = after.server.full - before.server.full;
    console.log(
      `1 MiB Checks with ${FLAGS.join(" ")}: ${answered} answered in ${MEASURE_MS / 1000} s, ` +
        `${full} full collections, heap ${after.server.heapMb.toFixed(0)} MB`,
    );
    expect(after.attack.failed, after.attack.errors.join("; ")).toBe(0);
    expect(answered, "Checks answered while measured").toBeGreaterThanOrEqual(2 * CHECKS_PER_FULL_COLLECTION);
    expect(full, `full collections during ${answered} Checks`).toBeLessThanOrEqual(
      Math.floor(answered / CHECKS_PER_FULL_COLLECTION),
    );
    await Promise.all([attack.stop(), server.stop()]);
  }, 60_000);
});
