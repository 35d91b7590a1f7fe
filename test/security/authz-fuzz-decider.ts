// The decider for test/security/authz-fuzz.isolated.test.ts, run on a worker thread as the authz
// process reads large bodies (the chat-reader pool's threads): an isolate that holds admission and the bodies it is
// sent, not the test runner and fast-check. Each message { recipe, rich } is built into its body here (so its
// garbage is this isolate's, collected before deciding) and decided twice (its first sight, when
// nothing about it is cached, and its second) with an in-memory admission whose account is funded (rich) or holds
// nothing; the answer is each decision's outcome (a refusal's code) and the process' CPU meanwhile (every thread's:
// garbage-collector helpers included; the test runner's thread waits for the answer), or the error it threw.
import { parentPort } from "node:worker_threads";
import { type BodyRecipe, buildBody } from "./authz-fuzz-bodies.js";
import { admissionFixture, cleanTimedCheck, encodedCheck, warmUpAdmission } from "./authz-support.js";

const port = parentPort;
if (!port) throw new Error("authz-fuzz-decider runs only as a worker thread");

const funded = admissionFixture(10n ** 12n);
const broke = admissionFixture(0n);
await warmUpAdmission(funded.secret, funded.deps);

port.on("message", async ({ recipe, rich }: { recipe: BodyRecipe; rich: boolean }) => {
  try {
    const body = buildBody(recipe);
    const { secret, deps } = rich ? funded : broke;
    const bytes = encodedCheck(secret, body);
    const decisions: Array<{ outcome: string; cpuMs: number }> = [];
    for (let sight = 0; sight < 2; sight++) {
      const { verdict, cpuMs } = await cleanTimedCheck(bytes, deps);
      decisions.push({ outcome: verdict.kind === "deny" ? verdict.code : verdict.kind, cpuMs });
    }
    port.postMessage({ decisions, preview: body.slice(0, 90), bytes: Buffer.byteLength(body) });
  } catch (error) {
    port.postMessage({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
port.postMessage("ready");
