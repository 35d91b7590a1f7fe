// The server of test/security/authz-gc.isolated.test.ts, in a process of its own as authz is: it holds what authz's
// event loop holds for its whole life (the tokenizer's tables, tens of MB of heap), and lifts each CheckRequest as
// authz does and answers OK without deciding (lift-only-server.ts). `node [flags] --import tsx
// authz-gc-server.ts` prints its port; each "count" line read from stdin is answered with one JSON line of the full
// (mark-compact) garbage collections of its main thread so far; it serves until stdin closes.
import { constants, type NodeGCPerformanceDetail, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { warmUpTokenEstimate } from "../../src/domain/token-estimate.js";
import { startLiftOnlyServer } from "./lift-only-server.js";

warmUpTokenEstimate();
let full = 0;
/** A "gc" entry's kind (its `detail`, which these types leave out). */
const kind = (entry: PerformanceEntry) => (entry as PerformanceEntry & { detail: NodeGCPerformanceDetail }).detail.kind;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (kind(entry) === constants.NODE_PERFORMANCE_GC_MAJOR) full++;
}).observe({ entryTypes: ["gc"] });

const server = await startLiftOnlyServer();
process.stdout.write(`${server.port}\n`);
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  input += chunk;
  for (let at = input.indexOf("\n"); at !== -1; at = input.indexOf("\n")) {
    if (input.slice(0, at).trim() === "count")
      process.stdout.write(`${JSON.stringify({ full, heapMb: process.memoryUsage().heapUsed / 2 ** 20 })}\n`);
    input = input.slice(at + 1);
  }
});
process.stdin.on("close", () => void server.close().then(() => process.exit(0)));
