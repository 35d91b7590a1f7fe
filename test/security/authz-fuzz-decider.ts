// The decider for test/security/authz-fuzz.isolated.test.ts, run on a worker thread as the authz
// process reads large bodies (the chat-reader pool's threads): an isolate that holds admission and the bodies it is
// sent, not the test runner and fast-check. Each message { recipe, rich } is built into its body here (so its
// garbage is this isolate's, collected before deciding) and decided twice (its first sight, when
// nothing about it is cached, and its second) with an in-memory admission whose account is funded (rich) or holds
// nothing; the answer is each decision's outcome (a refusal's code) and the process' CPU meanwhile (every thread's:
// garbage-collector helpers included; the test runner's thread waits for the answer), or the error it threw.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { parentPort } from "node:worker_threads";
import { type BodyRecipe, buildBody, CHAT_CLOSE, CHAT_OPEN } from "./authz-fuzz-bodies.js";
import { admissionFixture, bodyOfSize, encodedCheck, timedCheck } from "./authz-support.js";

const port = parentPort;
if (!port) throw new Error("authz-fuzz-decider runs only as a worker thread");

setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;

const funded = admissionFixture(10n ** 12n);
const broke = admissionFixture(0n);
// A serving process has compiled its Check path, for large bodies too, before the first attacker arrives; a body's
// first sight still pays for everything about that body.
for (let i = 0; i < 20; i++)
  await timedCheck(encodedCheck(funded.secret, `${CHAT_OPEN}warm up ${i}${CHAT_CLOSE}`), funded.deps);
for (const size of [10_000, 100_000, 1_000_000])
  await timedCheck(encodedCheck(funded.secret, bodyOfSize(size, CHAT_OPEN, "warm up ", CHAT_CLOSE)), funded.deps);

port.on("message", async ({ recipe, rich }: { recipe: BodyRecipe; rich: boolean }) => {
  try {
    const body = buildBody(recipe);
    const { secret, deps } = rich ? funded : broke;
    const bytes = encodedCheck(secret, body);
    const decisions: Array<{ outcome: string; cpuMs: number }> = [];
    for (let sight = 0; sight < 2; sight++) {
      // What earlier bodies left behind is collected first, and its sweeping (on helper threads) given time to end:
      // a decision pays for its own allocations, not for the bodies decided before it.
      // (A second collection finishes the first one's sweeping before it starts, on this thread.)
      collectGarbage();
      collectGarbage();
      await new Promise((resolve) => setTimeout(resolve, 10));
      const { verdict, cpuMs } = await timedCheck(bytes, deps);
      decisions.push({ outcome: verdict.kind === "deny" ? verdict.code : verdict.kind, cpuMs });
    }
    port.postMessage({ decisions, preview: body.slice(0, 90), bytes: Buffer.byteLength(body) });
  } catch (error) {
    port.postMessage({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
port.postMessage("ready");
