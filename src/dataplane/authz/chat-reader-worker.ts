// A worker thread of the chat-reader pool (chat-reader-pool.ts): reads one large chat body at a time with the
// domain's readChat and posts back its answer, so the authz event loop never spends a large body's CPU.
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { readChat } from "../../domain/chat-request.js";
import { warmUpTokenEstimate } from "../../domain/token-estimate.js";
import type { ReadJob, ReadResult } from "./chat-reader-pool.js";

const port = parentPort;
if (!port) throw new Error("chat-reader-worker runs only as a worker thread");

// On Linux a thread has its own nice value: reading a large body yields the CPU to the thread serving small Checks.
const { nice } = workerData as { nice: number };
if (nice > 0) {
  try {
    setPriority(nice);
  } catch {
    // Not permitted here: reading goes on at the same priority.
  }
}

// Before the first job is read (one sent meanwhile waits): no job pays the estimate's one-time set-up.
warmUpTokenEstimate();

port.on("message", (job: ReadJob) => {
  const servable = new Set(job.servable);
  const result: ReadResult = { id: job.id, read: readChat(job.body, (model) => servable.has(model)) };
  port.postMessage(result);
});
