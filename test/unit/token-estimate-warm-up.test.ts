// The token estimate's pre-tokenizer pattern is compiled by V8 on first use, once per string representation (one
// byte per character, as ASCII and Latin-1 text is; two, as any other script is): cold, the first CJK character cost a
// Check 18-25 ms of CPU (the admission fuzz's worst decision, 45 ms of its 50 ms bound, was one). authz and each
// chat-reader thread warm the estimate up before their first Check; V8's own trace shows no Check compiles a pattern.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CHILD = fileURLToPath(new URL("./fixtures/token-estimate-first-use.ts", import.meta.url));

/** The regular-expression compilations V8 traced while the child estimated its first prompts. */
function compilationsDuringFirstChecks(mode: "warm" | "cold"): string[] {
  const run = spawnSync(process.execPath, ["--trace-regexp-tier-up", "--import", "tsx", CHILD, mode], {
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`the child exited ${run.status}: ${run.stderr}`);
  const lines = run.stdout.split("\n");
  const from = lines.indexOf("=== first Checks");
  const to = lines.indexOf("=== end");
  expect(from).toBeGreaterThanOrEqual(0);
  expect(to).toBeGreaterThan(from);
  return lines.slice(from + 1, to).filter((line) => line.startsWith("JSRegExp"));
}

describe("token estimate warm-up", () => {
  it("after warmUpTokenEstimate, no first Check in any script compiles a regular expression", () => {
    // Without the warm-up the same prompts do: the trace sees what this test looks for.
    expect(compilationsDuringFirstChecks("cold").length).toBeGreaterThan(0);
    expect(compilationsDuringFirstChecks("warm")).toEqual([]);
  });
});
