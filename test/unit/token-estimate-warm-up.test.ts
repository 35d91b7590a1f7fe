// The token estimate's pre-tokenizer pattern is compiled by V8 on first use, and again for the first two-byte string
// (any character outside Latin-1 makes one: CJK, emoji, "—", "€"): without a warm-up, that compilation fell on a
// Check (README, Security model). authz warms the estimate up before it listens and each chat-reader thread as it
// starts; V8's own trace shows that no first estimate then compiles a pattern.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CHILD = fileURLToPath(new URL("../support/token-estimate-first-use-child.ts", import.meta.url));

/** The regular-expression compilations V8 traced while the child estimated its first two-byte prompts. */
function compilationsDuringFirstChecks(mode: "warm" | "cold" | "reader" | "collected" | "collected-library"): string[] {
  const run = spawnSync(process.execPath, ["--trace-regexp-tier-up", "--import", "tsx", CHILD, mode], {
    encoding: "utf8",
    // tsx's cache clean-up runs a pattern on its loader thread, which this trace would also show.
    env: { ...process.env, TSX_DISABLE_CACHE: "1" },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`the child ended with ${run.signal ?? run.status}: ${run.stderr}`);
  const lines = run.stdout.split("\n");
  const from = lines.indexOf("=== first Checks");
  const to = lines.indexOf("=== end");
  expect(from).toBeGreaterThanOrEqual(0);
  expect(to).toBeGreaterThan(from);
  return lines.slice(from + 1, to).filter((line) => line.startsWith("JSRegExp"));
}

describe("token estimate warm-up", () => {
  it("without it, a process's first two-byte prompt compiles a pattern (the trace sees what others look for)", () => {
    expect(compilationsDuringFirstChecks("cold").length).toBeGreaterThan(0);
  });

  it("after warmUpTokenEstimate, no first estimate in any script compiles a pattern", () => {
    expect(compilationsDuringFirstChecks("warm")).toEqual([]);
  });

  it("a chat-reader thread warms up as it starts: no job of its compiles a pattern", () => {
    expect(compilationsDuringFirstChecks("reader")).toEqual([]);
  });

  // V8 keeps a pattern's compiled code in a cache that forgets it after two full collections in which it was not
  // created again; String.prototype.matchAll creates a copy of its pattern on every call, so a tokenizer that splits
  // with matchAll recompiled after such a pair.
  it("stays warm through full garbage collections: no estimate after two of them compiles a pattern", () => {
    expect(compilationsDuringFirstChecks("collected")).toEqual([]);
  });

  it("(the control: after the same collections, gpt-tokenizer's own count compiles its pattern again)", () => {
    expect(compilationsDuringFirstChecks("collected-library").length).toBeGreaterThan(0);
  });
});
