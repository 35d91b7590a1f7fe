/**
 * A fresh process, as authz or a chat-reader thread is when it starts, for test/unit/token-estimate-warm-up.test.ts,
 * run under V8's --trace-regexp-tier-up: every regular-expression compilation V8 does is traced to stdout. Between
 * two markers it estimates prompts in scripts that are not among the warm-up texts, after one ASCII prompt that
 * compiles everything a one-byte string needs. argv: mode.
 * mode "warm": in this thread, after warmUpTokenEstimate (what authz does before it listens).
 * mode "cold": in this thread, without it.
 * mode "reader": on a chat-reader worker thread (src/dataplane/authz/chat-reader-worker.ts), which warms up as it
 * starts; each prompt is one job.
 * mode "collected": as "warm", and two full garbage collections before each prompt, with no estimate between them
 * (what a process that receives only large bodies, or none, for a while goes through).
 * mode "collected-library": as "collected", counting each prompt with gpt-tokenizer's own countTokens, which splits
 * with String.prototype.matchAll (the control: the collections do make V8 forget a pattern it copies on each call).
 */
import { once } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Worker } from "node:worker_threads";
import { estimateChatPrompt, warmUpTokenEstimate } from "../../src/domain/token-estimate.js";
import { workerFromModule } from "../../src/dataplane/worker-from-module.js";
import type { ReadJob, ReadResult } from "../../src/dataplane/authz/chat-reader-pool.js";

const FIRST = "hello world, how are you";
/** Two-byte strings: any character outside Latin-1 makes one ("—" and "€" too). */
const PROMPTS = [
  "另一个测试 hello",
  "안녕하세요 세계",
  "สวัสดีชาวโลก",
  "Γειά σου Κόσμε Привет мир",
  "🎉 party 👍🏽",
  "it’s 5 € — fine",
];
const chat = (content: string) => JSON.stringify({ model: "gpt-5.5", messages: [{ role: "user", content }] });

const mode = process.argv[2];
// A mistyped mode would otherwise run as "cold" and pass or fail for the wrong reason.
if (!["warm", "cold", "reader", "collected", "collected-library"].includes(mode ?? ""))
  throw new Error(`unknown mode ${mode}`);
let estimate: (content: string) => Promise<unknown>;
let reader: Worker | undefined;
if (mode === "reader") {
  const worker = workerFromModule(new URL("../../src/dataplane/authz/chat-reader-worker.ts", import.meta.url), {
    workerData: { nice: 0 },
  });
  reader = worker;
  let id = 0;
  estimate = async (content) => {
    const job: ReadJob = { id: ++id, body: { kind: "text", text: chat(content) }, servable: ["gpt-5.5"] };
    worker.postMessage(job);
    const [result] = (await once(worker, "message")) as [ReadResult];
    // A job refused, or read without its estimate (a model not servable), would make "no compilation" vacuous.
    if (!("tokens" in result.read) || !(result.read.tokens!.prompt > 0))
      throw new Error(`the reader did not estimate its job: ${JSON.stringify(result.read)}`);
    return result;
  };
} else if (mode === "collected" || mode === "collected-library") {
  let count = (content: string): unknown =>
    estimateChatPrompt({ model: "gpt-5.5", messages: [{ role: "user", content }] });
  warmUpTokenEstimate();
  if (mode === "collected-library") {
    // gpt-tokenizer's own count, compiled for one- and two-byte text before the markers as the warm-up compiles ours.
    const { countTokens } = await import("gpt-tokenizer/encoding/o200k_base");
    count = countTokens;
    countTokens(FIRST);
    countTokens(PROMPTS.join(" "));
  }
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  estimate = async (content) => {
    gc();
    gc();
    return count(content);
  };
} else {
  if (mode === "warm") warmUpTokenEstimate();
  estimate = async (content) => estimateChatPrompt({ model: "gpt-5.5", messages: [{ role: "user", content }] });
}

await estimate(FIRST);
process.stdout.write("=== first Checks\n");
for (const content of PROMPTS) await estimate(content);
process.stdout.write("=== end\n");
await reader?.terminate();
