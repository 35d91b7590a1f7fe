// The usage filter (envoy/usage.lua, under LuaJIT) and its TypeScript twin (src/dataplane/usage/extract.ts) against
// the same vectors: whole bodies, every two-chunk split, one byte per chunk, and a reset after the last chunk.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { recordFromFileLine } from "../../src/dataplane/accesslog/log-record.js";
import { createUsageExtractor, rewriteRequestBody, type UsageMetadata } from "../../src/dataplane/usage/extract.js";
import { classify } from "../../src/domain/metering.js";
import { fileLogLine } from "../support/als-client.js";

const ROOT = join(import.meta.dirname, "..", "..");
const USAGE_DIR = join(ROOT, "test", "vectors", "usage");
const REWRITE_DIR = join(ROOT, "test", "vectors", "request-rewrite");

interface UsageVector {
  name: string;
  provider: "openai" | "anthropic" | "google" | "deepseek";
  status: number;
  content_type: string;
  /** The response's content-encoding header, when it has one. */
  content_encoding?: string;
  /** The body as text, or (binary bodies, e.g. compressed) as base64 in body_base64. */
  body?: string;
  body_base64?: string;
  prompt_tokens_estimate?: number;
  cut_at?: number;
  expected: UsageMetadata;
}
interface RewriteVector {
  name: string;
  body: string;
  upstream_model: string;
  stream: boolean;
  expected_body: string;
}

function load<T>(dir: string): { file: string; vector: T }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({ file: join(dir, f), vector: JSON.parse(readFileSync(join(dir, f), "utf8")) as T }));
}

const usageVectors = load<UsageVector>(USAGE_DIR);
const rewriteVectors = load<RewriteVector>(REWRITE_DIR);

/** The bytes the filter sees: the body, truncated at cut_at (then end of stream arrives). */
function bodyBytes(v: UsageVector): Uint8Array {
  const all =
    v.body_base64 !== undefined
      ? new Uint8Array(Buffer.from(v.body_base64, "base64"))
      : new TextEncoder().encode(v.body);
  return v.cut_at === undefined ? all : all.subarray(0, v.cut_at);
}

function runTs(v: UsageVector, chunks: Uint8Array[], cutShort = false): UsageMetadata {
  const ex = createUsageExtractor({
    contentType: v.content_type,
    contentEncoding: v.content_encoding,
    status: v.status,
    promptTokensEstimate: v.prompt_tokens_estimate,
  });
  for (const c of chunks) ex.push(c);
  return ex.end(cutShort);
}

describe("usage vectors", () => {
  it("exist for every provider", () => {
    const providers = new Set(usageVectors.map((v) => v.vector.provider));
    expect([...providers].sort()).toEqual(["anthropic", "deepseek", "google", "openai"]);
    expect(rewriteVectors.length).toBeGreaterThan(0);
  });
});

describe("usage extractor (TypeScript)", () => {
  for (const { vector: v } of usageVectors) {
    describe(v.name, () => {
      const bytes = bodyBytes(v);
      it("whole body", () => {
        expect(runTs(v, [bytes])).toEqual(v.expected);
      });
      it("split into two chunks at every byte boundary", () => {
        for (let k = 0; k <= bytes.length; k++) {
          const got = runTs(v, [bytes.subarray(0, k), bytes.subarray(k)]);
          if (JSON.stringify(got) !== JSON.stringify(v.expected))
            expect({ split: k, got }).toEqual({ split: k, got: v.expected });
        }
      });
      it("one byte per chunk", () => {
        const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
        expect(runTs(v, chunks)).toEqual(v.expected);
      });
      it("cut short is never complete", () => {
        expect(runTs(v, [bytes], true).complete).toBe(false);
      });
    });
  }
});

describe("the meter bills what the usage filter writes", () => {
  // A usage namespace the meter refuses is dead-lettered: the request goes unbilled until its reservation expires.
  for (const { vector: v } of usageVectors) {
    it(`${v.name}: billed, never dead-lettered`, () => {
      const record = recordFromFileLine(
        fileLogLine({ accountId: "acct_a", decisionId: "d1", usage: { prompt: 1, completion: 1 } }),
      );
      for (const cutShort of [false, true]) {
        const verdict = classify({ ...record, usage: { ...runTs(v, [bodyBytes(v)], cutShort) } });
        expect({ cutShort, kind: verdict.kind, reason: verdict.kind === "malformed" ? verdict.reason : "" }).toEqual({
          cutShort,
          kind: "bill",
          reason: "",
        });
      }
    });
  }
});

describe("request rewrite (TypeScript)", () => {
  for (const { vector: v } of rewriteVectors) {
    it(v.name, () => {
      expect(rewriteRequestBody(v.body, v.upstream_model, v.stream)).toBe(v.expected_body);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Lua, under LuaJIT: required in CI, skipped (with one line saying how to install it) on a developer machine.
// ---------------------------------------------------------------------------------------------------------------

const hasLuajit = spawnSync("luajit", ["-v"]).status === 0;
const inCi = process.env["CI"] === "true";
if (!hasLuajit && !inCi) console.warn("Lua usage-filter tests skipped: luajit is not on PATH (apt-get install luajit)");
const luaDescribe = hasLuajit || inCi ? describe : describe.skip;

interface HarnessLine {
  split: number | null;
  usage?: UsageMetadata;
  body?: string;
  content_length?: string;
  headers?: { upstream_model: string | null; stream: string | null };
}

function harness(file: string, mode: string): HarnessLine[] {
  if (!hasLuajit) throw new Error("luajit is not on PATH but CI=true: apt-get install luajit");
  const r = spawnSync("luajit", [join("test", "lua", "harness.lua"), file, mode], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`harness ${mode} ${file} exited ${r.status}: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as HarnessLine);
}

luaDescribe("usage filter (Lua under LuaJIT)", () => {
  for (const { file, vector: v } of usageVectors) {
    describe(v.name, () => {
      it("whole body", () => {
        expect(harness(file, "whole")[0]?.usage).toEqual(v.expected);
      });
      it("split into two chunks at every byte boundary", () => {
        const lines = harness(file, "all-splits");
        expect(lines.length).toBe(bodyBytes(v).length + 1);
        for (const line of lines) {
          if (JSON.stringify(line.usage) !== JSON.stringify(v.expected))
            expect(line).toEqual({ split: line.split, usage: v.expected });
        }
      });
      it("one byte per chunk", () => {
        expect(harness(file, "bytes")[0]?.usage).toEqual(v.expected);
      });
      it("reset after the last chunk leaves the same metadata as the twin's end(cutShort)", () => {
        // Envoy never resumes the coroutine after a reset: what is in metadata then is what the meter bills.
        const got = harness(file, "reset")[0]?.usage;
        expect(got).toEqual(runTs(v, [bodyBytes(v)], true));
        expect(got?.complete).toBe(false);
      });
    });
  }

  for (const { file, vector: v } of rewriteVectors) {
    it(`request rewrite: ${v.name}`, () => {
      const out = harness(file, "request")[0];
      expect(out?.body).toBe(v.expected_body);
      expect(out?.content_length).toBe(String(Buffer.byteLength(v.expected_body, "utf8")));
      expect(out?.headers).toEqual({ upstream_model: null, stream: null });
    });
  }

  it("internal headers without an authz decision are dropped and the body is left alone", () => {
    const entry = rewriteVectors.find((r) => r.vector.name === "stream-adds-stream-options");
    if (entry === undefined) throw new Error("vector stream-adds-stream-options is missing");
    const out = harness(entry.file, "request-unadmitted")[0];
    expect(out?.body).toBe(entry.vector.body);
    expect(out?.headers).toEqual({ upstream_model: null, stream: null });
  });
});

// Binary bodies (compressed, or garbage from a broken proxy) in every position the filter can meet them: neither twin
// may throw or leave the request without usage, both estimate and say why, and they agree to the byte.
luaDescribe("binary response bodies (Lua and TypeScript agree, never without usage)", () => {
  it("random bytes and gzip, as JSON, SSE or other, with and without content-encoding", () => {
    let seed = 0x5eed;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const bodies = [
      gzipSync(Buffer.from('{"usage":{"prompt_tokens":3,"completion_tokens":4}}')),
      gzipSync(
        Buffer.from('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\ndata: [DONE]\n\n'),
      ),
      ...Array.from({ length: 6 }, () =>
        Buffer.from(Array.from({ length: 1 + Math.floor(random() * 600) }, () => Math.floor(random() * 256))),
      ),
    ];
    const dir = mkdtempSync(join(tmpdir(), "usage-binary-"));
    try {
      for (const [i, body] of bodies.entries())
        for (const content_type of ["application/json", "text/event-stream", "application/octet-stream"])
          for (const content_encoding of [undefined, "gzip"]) {
            const v: UsageVector = {
              name: `binary-${i}`,
              provider: "openai",
              status: 200,
              content_type,
              content_encoding,
              body_base64: body.toString("base64"),
              prompt_tokens_estimate: 9,
              expected: {} as UsageMetadata,
            };
            const file = join(dir, `${i}.json`);
            writeFileSync(file, JSON.stringify(v));
            const ts = runTs(v, [bodyBytes(v)]);
            const where = { i, content_type, content_encoding };
            expect({ ...where, usage: harness(file, "whole")[0]?.usage }).toEqual({ ...where, usage: ts });
            expect({ ...where, usage: harness(file, "bytes")[0]?.usage }).toEqual({ ...where, usage: ts });
            expect(ts.source).toBe("estimate");
            expect(ts.estimate_reason).toBe(
              content_encoding ? "compressed" : content_type === "text/event-stream" ? "no_usage" : "unreadable",
            );
          }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
