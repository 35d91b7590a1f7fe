// src/contract holds every name shared by Envoy's config, authz, the usage filter, the meter and the edge. The
// TypeScript side imports it; the Lua filter and the YAML cannot, so this test reads them and fails when a name
// they use drifts from the contract. Each check is a function from file text to a list of problems, so the drift
// cases below feed it altered copies and prove every check can fail.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import * as C from "../../src/contract/index.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import { toCheckResponse, type ResponseContext } from "../../src/dataplane/authz/check-response.js";
import { createDecisionSigner } from "../../src/dataplane/signing/decision-signature.js";
import { createUsageExtractor } from "../../src/dataplane/usage/extract.js";
import { nanos, picoPerToken } from "../../src/domain/money.js";
import type { Admission } from "../../src/domain/verdict.js";

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is walked loosely; a wrong path fails the test anyway
type Any = Record<string, any>;

const read = (path: string) => readFileSync(join(PACKAGE_ROOT, path), "utf8");
const LUA = "envoy/usage.lua";
const YAMLS = ["envoy/envoy.yaml", "envoy/envoy.local.yaml"];

const HEADERS = new Set<string>(Object.values(C.TOLLGATE_HEADERS));
const NAMESPACES = new Set<string>([C.AUTHZ_METADATA_NAMESPACE, C.USAGE_METADATA_NAMESPACE]);
const AUTHZ_KEYS = new Set<string>(Object.values(C.AUTHZ_METADATA_KEYS));
const USAGE_KEYS = new Set<string>(Object.values(C.USAGE_METADATA_KEYS));
const USAGE_SOURCES = new Set<string>(Object.values(C.USAGE_SOURCES));
const ESTIMATE_REASONS = new Set<string>(Object.values(C.USAGE_ESTIMATE_REASONS));
const sorted = (values: Iterable<string>) => [...values].sort();

/**
 * Names in any text, comments included (a comment naming a header that does not exist misleads as much as code):
 * x-tollgate-* tokens must be a contract header or the prefix itself ("x-tollgate-*"), x-envoy-auth-* the
 * partial-body header, and tollgate.* namespaces the usage namespace.
 */
function textProblems(text: string, file: string): string[] {
  const problems: string[] = [];
  for (const m of text.matchAll(/x-tollgate-(?:[a-z0-9]+(?:-[a-z0-9]+)*)?/gi)) {
    if (m[0] !== C.TOLLGATE_HEADER_PREFIX && !HEADERS.has(m[0]))
      problems.push(`${file}: header ${m[0]} is not in TOLLGATE_HEADERS`);
  }
  for (const m of text.matchAll(/x-envoy-auth-[a-z-]+/gi)) {
    if (m[0] !== C.PARTIAL_BODY_HEADER) problems.push(`${file}: ${m[0]} is not PARTIAL_BODY_HEADER`);
  }
  for (const m of text.matchAll(/\btollgate\.[a-z_]+\b/g)) {
    if (!NAMESPACES.has(m[0])) problems.push(`${file}: namespace ${m[0]} is not a contract namespace`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// The Lua filter, read as source.
// ---------------------------------------------------------------------------------------------------------------

/** Lua source split into its string literals and its code with comments removed and strings blanked. */
function lexLua(source: string): { strings: string[]; code: string } {
  const strings: string[] = [];
  let code = "";
  for (let i = 0; i < source.length; ) {
    const c = source[i]!;
    if (source.startsWith("--", i)) {
      const long = /^--\[(=*)\[/.exec(source.slice(i, i + 20));
      const end = long ? source.indexOf(`]${long[1]}]`, i) + long[1]!.length + 2 : source.indexOf("\n", i);
      i = end < 0 || (long && end < long[0].length) ? source.length : end;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let value = "";
      while (j < source.length && source[j] !== c) {
        if (source[j] === "\\") value += source[++j] ?? "";
        else value += source[j];
        j++;
      }
      strings.push(value);
      code += `${c}${c}`;
      i = j + 1;
    } else {
      code += c;
      i++;
    }
  }
  return { strings, code };
}

/** Where the Lua filter's names disagree with the contract (empty when they all agree). */
function luaProblems(source: string): string[] {
  const problems = textProblems(source, LUA);
  const { strings, code } = lexLua(source);
  const constant = (name: string, expected: string) => {
    const m = new RegExp(`local ${name} = "([^"]*)"`).exec(source);
    if (!m) problems.push(`${LUA}: no local ${name}`);
    else if (m[1] !== expected) problems.push(`${LUA}: ${name} is "${m[1]}", the contract says "${expected}"`);
  };
  constant("AUTHZ_NS", C.AUTHZ_METADATA_NAMESPACE);
  constant("USAGE_NS", C.USAGE_METADATA_NAMESPACE);
  constant("MODEL_HEADER", C.TOLLGATE_HEADERS.upstreamModel);
  constant("STREAM_HEADER", C.TOLLGATE_HEADERS.stream);
  for (const s of strings) {
    if (/ext_authz|^tollgate\./.test(s) && !NAMESPACES.has(s))
      problems.push(`${LUA}: namespace "${s}" is not a contract namespace`);
  }
  // Every field the filter reads from authz's namespace is a key authz writes.
  for (const m of code.matchAll(/\bauthz\.([A-Za-z_]\w*)/g)) {
    if (!AUTHZ_KEYS.has(m[1]!)) problems.push(`${LUA}: reads authz.${m[1]}, which is not in AUTHZ_METADATA_KEYS`);
  }
  const stream = [...source.matchAll(/\bstream\s*==\s*"([^"]*)"/g)];
  if (stream.length === 0) problems.push(`${LUA}: no comparison of the stream header`);
  for (const m of stream)
    if (m[1] !== C.STREAM_HEADER_ON)
      problems.push(`${LUA}: stream == "${m[1]}", the contract says "${C.STREAM_HEADER_ON}"`);
  // What it writes: RESULT_KEYS is exactly the usage keys, and result() builds nothing else.
  const resultKeys = /local RESULT_KEYS = \{([^}]*)\}/.exec(source);
  if (!resultKeys) problems.push(`${LUA}: no RESULT_KEYS`);
  else {
    const keys = [...resultKeys[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    if (JSON.stringify(sorted(keys)) !== JSON.stringify(sorted(USAGE_KEYS)))
      problems.push(`${LUA}: RESULT_KEYS ${JSON.stringify(keys)} are not USAGE_METADATA_KEYS`);
  }
  const resultFunction = /\nlocal function result\(ex, cut_short\)\n([\s\S]*?)\nend\n/;
  const result = resultFunction.exec(code);
  if (!result) problems.push(`${LUA}: no result() function`);
  else {
    const body = result[1]!;
    const fields = [...body.matchAll(/\{([^{}]*)\}/g)].flatMap((t) =>
      [...t[1]!.matchAll(/(\w+)\s*=(?!=)/g)].map((m) => m[1]!),
    );
    fields.push(...[...body.matchAll(/\br\.(\w+)\s*=(?!=)/g)].map((m) => m[1]!));
    for (const f of new Set(fields))
      if (!USAGE_KEYS.has(f)) problems.push(`${LUA}: result() sets ${f}, which is not in USAGE_METADATA_KEYS`);
    const sources = [...(resultFunction.exec(source)?.[1] ?? "").matchAll(/source = "([^"]*)"/g)].map((m) => m[1]!);
    if (sources.length === 0) problems.push(`${LUA}: result() sets no source`);
    for (const v of sources) if (!USAGE_SOURCES.has(v)) problems.push(`${LUA}: source "${v}" is not in USAGE_SOURCES`);
    const reasons = [...(resultFunction.exec(source)?.[1] ?? "").matchAll(/estimate_reason = "([^"]*)"/g)].map(
      (m) => m[1]!,
    );
    // Every reason once, and "" for the provider's usage read whole.
    if (JSON.stringify(sorted(reasons)) !== JSON.stringify(sorted(["", ...ESTIMATE_REASONS])))
      problems.push(`${LUA}: result()'s estimate reasons ${JSON.stringify(reasons)} are not USAGE_ESTIMATE_REASONS`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// The Envoy bootstraps, parsed.
// ---------------------------------------------------------------------------------------------------------------

/** Every string in a parsed YAML document, keys included. */
function* strings(node: unknown): Generator<string> {
  if (typeof node === "string") yield node;
  else if (Array.isArray(node)) for (const v of node) yield* strings(v);
  else if (node !== null && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      yield k;
      yield* strings(v);
    }
  }
}

/** Where an Envoy bootstrap's names disagree with the contract (empty when they all agree). */
function yamlProblems(text: string, file: string): string[] {
  const problems = textProblems(text, file);
  const doc = parse(text) as Any;
  for (const s of strings(doc)) {
    for (const m of s.matchAll(/%DYNAMIC_METADATA\(([^):]*)/g)) {
      if (!NAMESPACES.has(m[1]!)) problems.push(`${file}: %DYNAMIC_METADATA(${m[1]})% is not a contract namespace`);
    }
  }
  const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config as Any;
  // Envoy files ext_authz's metadata under the filter's name: the name is the namespace.
  const extAuthz = (hcm.http_filters as Any[]).find((f) => String(f.typed_config?.["@type"]).endsWith(".ExtAuthz"));
  if (extAuthz?.name !== C.AUTHZ_METADATA_NAMESPACE)
    problems.push(`${file}: the ext_authz filter is named ${extAuthz?.name}, not ${C.AUTHZ_METADATA_NAMESPACE}`);
  const patterns = (extAuthz?.typed_config.allowed_headers?.patterns ?? []) as Any[];
  if (!patterns.some((p) => p.prefix === C.TOLLGATE_HEADER_PREFIX))
    problems.push(`${file}: allowed_headers lacks prefix ${C.TOLLGATE_HEADER_PREFIX}`);
  if (extAuthz?.typed_config.with_request_body?.allow_partial_message !== true)
    problems.push(`${file}: allow_partial_message is off, so ${C.PARTIAL_BODY_HEADER} is never sent`);
  const fileLog = (hcm.access_log as Any[]).find((l) => l.name === "envoy.access_loggers.file")?.typed_config as Any;
  const format = (fileLog?.log_format?.json_format ?? {}) as Record<string, string>;
  if (JSON.stringify(Object.keys(format)) !== JSON.stringify(Object.values(C.FILE_LOG_KEYS))) {
    problems.push(`${file}: json_format keys ${JSON.stringify(Object.keys(format))} are not FILE_LOG_KEYS`);
  }
  if (format[C.FILE_LOG_KEYS.authz] !== `%DYNAMIC_METADATA(${C.AUTHZ_METADATA_NAMESPACE})%`)
    problems.push(`${file}: json_format.${C.FILE_LOG_KEYS.authz} is not the authz namespace`);
  if (format[C.FILE_LOG_KEYS.usage] !== `%DYNAMIC_METADATA(${C.USAGE_METADATA_NAMESPACE})%`)
    problems.push(`${file}: json_format.${C.FILE_LOG_KEYS.usage} is not the usage namespace`);
  const routes = (hcm.route_config.virtual_hosts as Any[]).flatMap((v) => v.routes as Any[]).filter((r) => r.route);
  if (routes.length === 0) problems.push(`${file}: no provider routes`);
  for (const r of routes) {
    const on = ((r.match.headers ?? []) as Any[]).map((h) => h.name as string);
    if (JSON.stringify(on) !== JSON.stringify([C.TOLLGATE_HEADERS.provider]))
      problems.push(`${file}: route ${r.name} matches on ${JSON.stringify(on)}, not ${C.TOLLGATE_HEADERS.provider}`);
    const removed = (r.request_headers_to_remove ?? []) as string[];
    if (JSON.stringify(sorted(removed)) !== JSON.stringify(sorted(C.INTERNAL_REQUEST_HEADERS))) {
      problems.push(`${file}: route ${r.name} removes ${JSON.stringify(removed)}, not INTERNAL_REQUEST_HEADERS`);
    }
  }
  return problems;
}

/** `replace` on a text that must contain `from`: an alteration of a text that is not there would prove nothing. */
function altered(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  if (out === text) throw new Error(`alteration not applied: ${String(from)}`);
  return out;
}

describe("envoy/usage.lua uses the contract's names", () => {
  const lua = read(LUA);
  it("agrees: namespaces, header names, the stream flag, the authz keys it reads, the usage keys it writes", () => {
    expect(luaProblems(lua)).toEqual([]);
  });

  const drifts: Array<[string, string, RegExp | string, string]> = [
    [
      "a usage key renamed in RESULT_KEYS",
      "RESULT_KEYS",
      '"cached_tokens", "reasoning_tokens"',
      '"cached_tokens", "reasoning"',
    ],
    ["a usage key renamed in result()", "result() sets", "reasoning_tokens = 0, source", "reasoning = 0, source"],
    ["the usage namespace", "USAGE_NS", 'local USAGE_NS = "tollgate.usage"', 'local USAGE_NS = "tollgate.usages"'],
    [
      "the authz namespace",
      "AUTHZ_NS",
      'local AUTHZ_NS = "envoy.filters.http.ext_authz"',
      'local AUTHZ_NS = "envoy.filters.http.authz"',
    ],
    [
      "the model header",
      "MODEL_HEADER",
      'local MODEL_HEADER = "x-tollgate-upstream-model"',
      'local MODEL_HEADER = "x-tollgate-model"',
    ],
    [
      "an authz key it reads",
      "authz.decision",
      "authz.decision_id == nil then return end\n  local body",
      "authz.decision == nil then return end\n  local body",
    ],
    ["the stream flag value", "stream ==", 'stream == "1"', 'stream == "true"'],
    ["a usage source", "source", 'source = "estimate"', 'source = "estimated"'],
    ["an estimate reason", "estimate reasons", 'estimate_reason = "compressed"', 'estimate_reason = "gzip"'],
    [
      "a header named in a comment",
      "x-tollgate-upstreammodel",
      "using the headers ext_authz set",
      "using x-tollgate-upstreammodel",
    ],
  ];
  for (const [what, named, from, to] of drifts) {
    it(`fails when ${what} drifts`, () => {
      const problems = luaProblems(altered(lua, from, to));
      expect(problems.length).toBeGreaterThan(0);
      expect(problems.join("\n")).toContain(named);
    });
  }
});

for (const file of YAMLS) {
  describe(`${file} uses the contract's names`, () => {
    const yaml = read(file);
    it("agrees: ext_authz's name, allowed prefix, file-log keys and namespaces, route header, removed headers", () => {
      expect(yamlProblems(yaml, file)).toEqual([]);
    });

    const drifts: Array<[string, string, RegExp | string, string]> = [
      ["the route's provider header", "route openai", /- name: x-tollgate-provider\n/, "- name: x-tollgate-backend\n"],
      [
        "a removed header",
        "route anthropic",
        /(name: anthropic[\s\S]*?request_headers_to_remove: \[x-tollgate-provider, x-tollgate-upstream-model), x-tollgate-stream\]/,
        "$1, x-tollgate-streaming]",
      ],
      ["a file-log key", "json_format keys", "duration_ms:", "duration:"],
      [
        "a metadata namespace in the file log",
        "%DYNAMIC_METADATA(tollgate.use)%",
        "%DYNAMIC_METADATA(tollgate.usage)%",
        "%DYNAMIC_METADATA(tollgate.use)%",
      ],
      [
        "the allowed x-tollgate- prefix",
        "allowed_headers lacks prefix",
        '- prefix: "x-tollgate-"',
        '- prefix: "x-tg-"',
      ],
      [
        "the partial-body header in a comment",
        "PARTIAL_BODY_HEADER",
        "x-envoy-auth-partial-body",
        "x-envoy-auth-partial",
      ],
    ];
    for (const [what, named, from, to] of drifts) {
      it(`fails when ${what} drifts`, () => {
        const problems = yamlProblems(altered(yaml, from, to), file);
        expect(problems.length).toBeGreaterThan(0);
        expect(problems.join("\n")).toContain(named);
      });
    }
  });
}

describe("envoy/README.md names only the contract's headers and namespaces", () => {
  it("agrees", () => expect(textProblems(read("envoy/README.md"), "envoy/README.md")).toEqual([]));
  it("fails when a header it names drifts", () => {
    const readme = altered(read("envoy/README.md"), "`x-tollgate-upstream-model`", "`x-tollgate-model`");
    expect(textProblems(readme, "envoy/README.md").join("\n")).toContain("x-tollgate-model is not in TOLLGATE_HEADERS");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The Lua filter, run: every name it touches, recorded by mocks (LuaJIT; required in CI, skipped elsewhere).
// ---------------------------------------------------------------------------------------------------------------

const hasLuajit = spawnSync("luajit", ["-v"]).status === 0;
const inCi = process.env["CI"] === "true";
const luaDescribe = hasLuajit || inCi ? describe : describe.skip;

interface Probe {
  request_headers: string[];
  response_headers: string[];
  metadata_get: string[];
  metadata_set: Array<[string, string]>;
  authz_read: string[];
  rewritten_body: string;
  left_request_headers: string[];
}

function probe(luaPath: string): Probe {
  if (!hasLuajit) throw new Error("luajit is not on PATH but CI=true: apt-get install luajit");
  const config = {
    authz_namespace: C.AUTHZ_METADATA_NAMESPACE,
    model_header: C.TOLLGATE_HEADERS.upstreamModel,
    stream_header: C.TOLLGATE_HEADERS.stream,
    stream_on: C.STREAM_HEADER_ON,
    authz: {
      [C.AUTHZ_METADATA_KEYS.decisionId]: "d-probe",
      [C.AUTHZ_METADATA_KEYS.promptTokensEstimate]: 5,
      [C.AUTHZ_METADATA_KEYS.stream]: true,
    },
  };
  const r = spawnSync("luajit", [join("test", "lua", "contract-probe.lua"), luaPath, JSON.stringify(config)], {
    cwd: PACKAGE_ROOT,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`contract probe exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Probe;
}

/** Where the names the running filter touched disagree with the contract. */
function probeProblems(p: Probe): string[] {
  const problems: string[] = [];
  for (const ns of p.metadata_get)
    if (ns !== C.AUTHZ_METADATA_NAMESPACE) problems.push(`reads metadata namespace ${ns}`);
  for (const [ns, key] of p.metadata_set) {
    if (ns !== C.USAGE_METADATA_NAMESPACE) problems.push(`writes metadata namespace ${ns}`);
    if (!USAGE_KEYS.has(key)) problems.push(`writes usage key ${key}, which is not in USAGE_METADATA_KEYS`);
  }
  const written = new Set(p.metadata_set.map(([, key]) => key));
  for (const key of USAGE_KEYS) if (!written.has(key)) problems.push(`never writes usage key ${key}`);
  for (const key of p.authz_read)
    if (!AUTHZ_KEYS.has(key)) problems.push(`reads authz key ${key}, which is not in AUTHZ_METADATA_KEYS`);
  for (const h of [...p.request_headers, ...p.response_headers]) {
    if (h.startsWith(C.TOLLGATE_HEADER_PREFIX) && !HEADERS.has(h))
      problems.push(`uses header ${h}, which is not in TOLLGATE_HEADERS`);
  }
  for (const h of p.left_request_headers)
    if (h.startsWith(C.TOLLGATE_HEADER_PREFIX)) problems.push(`leaves ${h} on the request`);
  if (!p.rewritten_body.includes('"include_usage":true'))
    problems.push(`did not treat ${C.TOLLGATE_HEADERS.stream}: ${C.STREAM_HEADER_ON} as a stream`);
  return problems;
}

luaDescribe("envoy/usage.lua, run under LuaJIT, touches only the contract's names", () => {
  it("reads the authz namespace, writes every usage key and no other, strips and obeys the contract headers", () => {
    const p = probe(LUA);
    expect(probeProblems(p)).toEqual([]);
    expect(p.authz_read).toContain(C.AUTHZ_METADATA_KEYS.decisionId);
    expect(p.authz_read).toContain(C.AUTHZ_METADATA_KEYS.promptTokensEstimate);
  });

  it("fails when the Lua writes a usage key the contract does not have", () => {
    const dir = mkdtempSync(join(tmpdir(), "tollgate-names-"));
    try {
      const path = join(dir, "usage.lua");
      writeFileSync(path, altered(read(LUA), '"cached_tokens", "reasoning_tokens"', '"cached_tokens", "reasoning"'));
      expect(probeProblems(probe(path)).join("\n")).toContain("never writes usage key reasoning_tokens");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The TypeScript writers: what they emit is exactly the contract's keys (they import it; this pins "exactly").
// ---------------------------------------------------------------------------------------------------------------

describe("authz and the usage twin write exactly the contract's keys", () => {
  const prices = {
    input: picoPerToken(5_000_000n),
    cachedInput: picoPerToken(500_000n),
    output: picoPerToken(30_000_000n),
  };
  const admission: Admission = {
    kind: "allow",
    decisionId: "d-names",
    accountId: "acct_1",
    keyId: "key_1",
    model: {
      id: "m",
      displayName: "M",
      provider: "openai",
      upstreamModel: "m-up",
      tier: "premium",
      prices,
      contextWindow: 1,
      maxOutputTokens: 10,
      retired: false,
    },
    stream: true,
    promptTokensEstimate: 12,
    maxOutputTokens: 64,
    reservedTokens: 76,
    reservedNanos: nanos(1980n),
  };
  const context: ResponseContext = {
    tollgateHeaders: [],
    query: "",
    provider: { basePath: "/v1", authorization: "Bearer sk" },
    signer: createDecisionSigner("names-test-signing-secret-0123456789abcdef"),
  };

  it("an allow's metadata has every authz key but verdict; its x-tollgate-* headers are the contract's", () => {
    const res = toCheckResponse(admission, context);
    expect(sorted(Object.keys(res.dynamicMetadata ?? {}))).toEqual(
      sorted([...AUTHZ_KEYS].filter((k) => k !== C.AUTHZ_METADATA_KEYS.verdict)),
    );
    if (res.httpResponse.case !== "okResponse") throw new Error("not an allow");
    const set = res.httpResponse.value.headers
      .map((h) => h.header!.key)
      .filter((k) => k.startsWith(C.TOLLGATE_HEADER_PREFIX));
    expect(sorted(set)).toEqual(sorted(C.INTERNAL_REQUEST_HEADERS));
    expect(res.httpResponse.value.responseHeadersToAdd.map((h) => h.header!.key)).toContain(
      C.TOLLGATE_HEADERS.decisionId,
    );
  });

  it("a deny's metadata is the verdict key alone", () => {
    const res = toCheckResponse({ kind: "deny", code: "invalid_api_key", message: "no" }, undefined);
    expect(Object.keys(res.dynamicMetadata ?? {})).toEqual([C.AUTHZ_METADATA_KEYS.verdict]);
  });

  it("the usage twin's result has exactly the usage keys and a contract source", () => {
    const extractor = createUsageExtractor({ contentType: "application/json", status: 200, promptTokensEstimate: 3 });
    extractor.push(new TextEncoder().encode('{"usage":{"prompt_tokens":3,"completion_tokens":4}}'));
    const usage = extractor.end(false);
    expect(sorted(Object.keys(usage))).toEqual(sorted(USAGE_KEYS));
    expect(USAGE_SOURCES.has(usage[C.USAGE_METADATA_KEYS.source])).toBe(true);
  });

  it("the usage twin's estimate reasons are the contract's", () => {
    const compressed = createUsageExtractor({ contentType: "application/json", contentEncoding: "br", status: 200 });
    expect(compressed.end(false)[C.USAGE_METADATA_KEYS.estimateReason]).toBe(C.USAGE_ESTIMATE_REASONS.compressed);
    const cut = createUsageExtractor({ contentType: "text/event-stream", status: 200 });
    expect(ESTIMATE_REASONS.has(cut.end(true)[C.USAGE_METADATA_KEYS.estimateReason])).toBe(true);
  });
});
