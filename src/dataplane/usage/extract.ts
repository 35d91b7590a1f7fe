// TypeScript twin of envoy/usage.lua, used by the local edge where Envoy is absent. Both are held to the same
// vectors (test/vectors/usage, test/vectors/request-rewrite), so every rule here mirrors one there: change both.
import {
  USAGE_ESTIMATE_REASONS as R,
  USAGE_METADATA_KEYS as U,
  USAGE_SOURCES,
  type UsageEstimateReason,
} from "../../contract/index.js";

/** The `tollgate.usage` dynamic metadata the meter bills from; keys are the exact metadata keys (src/contract). */
export interface UsageMetadata extends Counts {
  /** "provider" when the upstream reported usage (or an error, which costs nothing), else "estimate". */
  [U.source]: (typeof USAGE_SOURCES)[keyof typeof USAGE_SOURCES];
  /** True when the response finished normally: JSON fully received, or the stream reached [DONE] or a usage chunk. */
  [U.complete]: boolean;
  /** Why the counts are an estimate (or billed as one: cut short); "" when the provider's usage was read whole. */
  [U.estimateReason]: UsageEstimateReason | "";
}

/** What the extractor needs to know about the response before its body arrives. */
export interface UsageExtractorOptions {
  contentType: string | null | undefined;
  /** The response's content-encoding: anything but identity means the body cannot be read (Lua: `is_compressed`). */
  contentEncoding?: string | null;
  status: number;
  /** Authz's `prompt_tokens_estimate`; used when the provider reports no usage. */
  promptTokensEstimate?: number | null;
}

/** Streaming usage reader: feed body chunks as they pass, then end once. */
export interface UsageExtractor {
  /** Feeds one body chunk; SSE is parsed as it arrives, only JSON bodies are kept until the end. */
  push(chunk: Uint8Array): void;
  /** Ends the body; `cutShort` when the stream did not end normally (upstream reset, client gone). */
  end(cutShort: boolean): UsageMetadata;
}

/** JSON bodies past this size are not parsed (usage is estimated), as in the Lua filter. */
const MAX_JSON_BODY_BYTES = 8 * 1024 * 1024;

type Kind = "sse" | "json" | "other";
/** The four token counts of `tollgate.usage`. */
interface Counts {
  [U.promptTokens]: number;
  [U.completionTokens]: number;
  [U.cachedTokens]: number;
  [U.reasoningTokens]: number;
}
type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Token counts must be non-negative integers; anything else counts as 0 (Lua: `count`). */
function count(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

/** Unicode code points: a low surrogate right after a high one completes a pair and is not counted again. */
function chars(s: string): number {
  let n = s.length;
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const p = s.charCodeAt(i - 1);
    if (c >= 0xdc00 && c <= 0xdfff && p >= 0xd800 && p <= 0xdbff) {
      n--;
      i++; // the pair is consumed; the next unit cannot be its low half
    }
  }
  return n;
}

// Lua's %s and string.lower are ASCII-only; the twin must not be more lenient.
const ASCII_SPACE = /^[ \t\n\v\f\r]*/;
function mediaKind(contentType: string | null | undefined): Kind {
  if (typeof contentType !== "string") return "other";
  const lower = contentType.replace(/[A-Z]/g, (c) => c.toLowerCase()).replace(ASCII_SPACE, "");
  const type = /^[^; \t\n\v\f\r]*/.exec(lower)?.[0] ?? "";
  if (type === "text/event-stream") return "sse";
  if (type === "application/json" || type.endsWith("+json")) return "json";
  return "other";
}

/**
 * A content-encoding other than identity (a provider that ignored `accept-encoding: identity`): nothing in the body
 * can be read. Codings are comma-separated, ASCII case-insensitive, as Lua's `gmatch("[^,%s]+")` splits them.
 */
function isCompressed(contentEncoding: string | null | undefined): boolean {
  if (typeof contentEncoding !== "string") return false;
  const lower = contentEncoding.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return (lower.match(/[^, \t\n\v\f\r]+/g) ?? []).some((coding) => coding !== "identity");
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function readUsage(u: JsonObject): Counts {
  const pd = u["prompt_tokens_details"];
  // DeepSeek reports cache hits as prompt_cache_hit_tokens (older responses carry no prompt_tokens_details).
  const cached =
    isObject(pd) && typeof pd["cached_tokens"] === "number"
      ? count(pd["cached_tokens"])
      : count(u["prompt_cache_hit_tokens"]);
  const cd = u["completion_tokens_details"];
  const reasoning = isObject(cd) ? count(cd["reasoning_tokens"]) : 0;
  const prompt = count(u["prompt_tokens"]);
  let completion = count(u["completion_tokens"]);
  // Google reports thinking tokens beside completion_tokens (its total_tokens counts both), OpenAI and DeepSeek
  // inside them; completion_tokens here is OpenAI's (all output billed), so tokens reported beside are added in.
  if (reasoning > 0 && (reasoning > completion || count(u["total_tokens"]) === prompt + completion + reasoning))
    completion += reasoning;
  // Left: our metadata keys (the contract); right: the provider's usage fields (OpenAI's API).
  return {
    [U.promptTokens]: prompt,
    [U.completionTokens]: completion,
    [U.cachedTokens]: cached,
    [U.reasoningTokens]: reasoning,
  };
}

/**
 * Counts the meter can bill: it refuses cached above prompt, reasoning above completion and counts past 2^53, so
 * such usage is not read and the response is estimated as "invalid_usage" instead of never billed (Lua: `billable`).
 */
function billable(u: Counts): boolean {
  return (
    u[U.cachedTokens] <= u[U.promptTokens] &&
    u[U.reasoningTokens] <= u[U.completionTokens] &&
    u[U.promptTokens] <= Number.MAX_SAFE_INTEGER &&
    u[U.completionTokens] <= Number.MAX_SAFE_INTEGER
  );
}

/** Creates a streaming usage extractor for one response (the local edge's stand-in for envoy/usage.lua). */
export function createUsageExtractor(options: UsageExtractorOptions): UsageExtractor {
  const compressed = isCompressed(options.contentEncoding);
  // A compressed body is not parsed at all: its bytes are only counted.
  const kind: Kind = compressed ? "other" : mediaKind(options.contentType);
  let bytes = 0;
  const status = options.status;
  const estimate = count(options.promptTokensEstimate);
  // ignoreBOM keeps a BOM as text, as the Lua filter (which sees bytes) does.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  let textChars = 0;
  let usage: Counts | undefined;
  let invalidUsage = false;
  let sawDone = false;
  let jsonOk = false;
  let ended = false;
  // SSE: the unterminated tail of the current line, the current event's data lines, and whether "\r" ended the
  // previous chunk (a "\n" opening the next one then belongs to the same line break).
  let line = "";
  let data: string[] = [];
  let skipLf = false;
  // JSON: decoded text, joined once at the end; size is counted in bytes, like the Lua cap.
  let parts: string[] = [];
  let size = 0;
  let overflow = false;

  function takeObject(obj: JsonObject, part: "delta" | "message"): void {
    if (isObject(obj["usage"])) {
      const read = readUsage(obj["usage"]);
      invalidUsage = !billable(read);
      usage = invalidUsage ? undefined : read;
    }
    const choices = obj["choices"];
    if (!Array.isArray(choices)) return;
    for (const choice of choices) {
      const d = isObject(choice) ? choice[part] : undefined;
      if (!isObject(d)) continue;
      if (typeof d["content"] === "string") textChars += chars(d["content"]);
      if (typeof d["reasoning_content"] === "string") textChars += chars(d["reasoning_content"]);
      const calls = d["tool_calls"];
      if (!Array.isArray(calls)) continue;
      for (const call of calls) {
        const fn = isObject(call) ? call["function"] : undefined;
        if (isObject(fn) && typeof fn["arguments"] === "string") textChars += chars(fn["arguments"]);
      }
    }
  }

  function dispatchEvent(): void {
    if (data.length === 0) return;
    const text = data.join("\n");
    data = [];
    if (text === "[DONE]") {
      sawDone = true;
      return;
    }
    const parsed = parseJson(text);
    if (parsed.ok && isObject(parsed.value)) takeObject(parsed.value, "delta");
  }

  // One SSE line (WHATWG EventSource rules): blank dispatches, ":" is a comment, "data" accumulates.
  function sseLine(l: string): void {
    if (l === "") {
      dispatchEvent();
      return;
    }
    if (l.startsWith(":")) return;
    const colon = l.indexOf(":");
    let field = l;
    let value = "";
    if (colon >= 0) {
      field = l.slice(0, colon);
      value = l.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    if (field === "data") data.push(value);
  }

  function sseText(text: string): void {
    let buf = line + text;
    if (skipLf && buf.length > 0) {
      if (buf.charCodeAt(0) === 10) buf = buf.slice(1);
      skipLf = false;
    }
    let pos = 0;
    const breaks = /[\r\n]/g;
    for (let m = breaks.exec(buf); m !== null; m = breaks.exec(buf)) {
      const k = m.index;
      const l = buf.slice(pos, k);
      if (buf.charCodeAt(k) === 13) {
        if (k === buf.length - 1) {
          skipLf = true;
          pos = k + 1;
        } else if (buf.charCodeAt(k + 1) === 10) {
          pos = k + 2;
        } else {
          pos = k + 1;
        }
      } else {
        pos = k + 1;
      }
      breaks.lastIndex = pos;
      sseLine(l);
    }
    line = buf.slice(pos);
  }

  function result(cutShort: boolean): UsageMetadata {
    let counts: Counts;
    let source: UsageMetadata[typeof U.source];
    if (usage !== undefined) {
      counts = { ...usage };
      source = USAGE_SOURCES.provider;
    } else if (status >= 400) {
      // An upstream error costs nothing.
      counts = { [U.promptTokens]: 0, [U.completionTokens]: 0, [U.cachedTokens]: 0, [U.reasoningTokens]: 0 };
      source = USAGE_SOURCES.provider;
    } else {
      // Completion: a token per 4 characters of the text seen; of a compressed body, per 4 of its bytes.
      counts = {
        [U.promptTokens]: estimate,
        [U.completionTokens]: Math.ceil((compressed ? bytes : textChars) / 4),
        [U.cachedTokens]: 0,
        [U.reasoningTokens]: 0,
      };
      source = USAGE_SOURCES.estimate;
    }
    let complete: boolean;
    if (cutShort) complete = false;
    else if (status >= 400 || compressed) complete = true;
    else if (kind === "sse") complete = sawDone || usage !== undefined;
    else if (kind === "json") complete = jsonOk;
    else complete = true;
    return { ...counts, [U.source]: source, [U.complete]: complete, [U.estimateReason]: reason(source, cutShort) };
  }

  /** Why the counts are not the provider's, read whole ("" when they are); the Lua filter decides in this order. */
  function reason(source: UsageMetadata[typeof U.source], cutShort: boolean): UsageEstimateReason | "" {
    if (source === USAGE_SOURCES.estimate && compressed) return R.compressed;
    if (cutShort) return R.cutShort;
    if (source !== USAGE_SOURCES.estimate) return "";
    if (overflow) return R.tooLarge;
    if (invalidUsage) return R.invalidUsage;
    if (kind === "other" || (kind === "json" && !jsonOk)) return R.unreadable;
    return R.noUsage;
  }

  return {
    push(chunk: Uint8Array): void {
      if (ended) throw new Error("usage extractor: push after end");
      if (chunk.length === 0) return;
      bytes += chunk.length;
      if (kind === "json") {
        if (overflow) return;
        size += chunk.length;
        if (size > MAX_JSON_BODY_BYTES) {
          overflow = true;
          parts = [];
          return;
        }
        parts.push(decoder.decode(chunk, { stream: true }));
      } else if (kind === "sse") {
        sseText(decoder.decode(chunk, { stream: true }));
      }
    },
    end(cutShort: boolean): UsageMetadata {
      if (ended) throw new Error("usage extractor: end called twice");
      ended = true;
      // A cut-short JSON body is not trusted (the Lua filter never gets to parse one when Envoy resets the stream).
      // An unterminated last SSE line or event is discarded (EventSource semantics), so nothing is flushed.
      if (!cutShort && kind === "json" && !overflow) {
        parts.push(decoder.decode());
        const parsed = parseJson(parts.join(""));
        parts = [];
        if (parsed.ok) {
          jsonOk = true;
          if (isObject(parsed.value)) takeObject(parsed.value, "message");
        }
      }
      return result(cutShort);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Request rewrite: exact surgery on top-level members; nothing else in the body changes by a character.
// ---------------------------------------------------------------------------------------------------------------

interface Member {
  key: string;
  /** Index of the value's first character. */
  start: number;
  /** Index just past the value's last character. */
  end: number;
}
interface Edit {
  start: number;
  end: number;
  text: string;
}

function skipWs(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    i++;
  }
  return i;
}

/** Index just past the string whose opening quote is at i (the text is already known to be valid JSON). */
function skipString(s: string, i: number): number {
  i++;
  while (s.charCodeAt(i) !== 0x22) i += s.charCodeAt(i) === 0x5c ? 2 : 1;
  return i + 1;
}

/** Index just past the value starting at i (valid JSON assumed: JSON.parse has accepted the whole text). */
function skipValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return skipString(s, i);
  if (c === "{" || c === "[") {
    let depth = 0;
    while (i < s.length) {
      const d = s[i];
      if (d === '"') {
        i = skipString(s, i);
        continue;
      }
      if (d === "{" || d === "[") depth++;
      else if (d === "}" || d === "]") {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  const scalar = /[-+0-9.eEtrufalsn]*/y; // numbers and true / false / null
  scalar.lastIndex = i;
  scalar.exec(s);
  return scalar.lastIndex;
}

/** Members of the object whose "{" is at i; keys are decoded, so "mod\u0065l" is "model" as every parser sees it. */
function scanMembers(s: string, open: number): Member[] {
  const members: Member[] = [];
  let i = skipWs(s, open + 1);
  if (s[i] === "}") return members;
  for (;;) {
    const keyEnd = skipString(s, i);
    const key = JSON.parse(s.slice(i, keyEnd)) as string;
    i = skipWs(s, keyEnd) + 1; // past ":"
    const start = skipWs(s, i);
    const end = skipValue(s, start);
    members.push({ key, start, end });
    i = skipWs(s, end);
    if (s[i] === "}") return members;
    i = skipWs(s, i + 1); // past ","
  }
}

/** New members go right after the last member's value (or right after "{"), so whitespace layout is kept. */
function insertion(open: number, members: Member[], texts: string[]): Edit {
  const last = members[members.length - 1];
  const at = last !== undefined ? last.end : open + 1;
  return { start: at, end: at, text: (last !== undefined ? "," : "") + texts.join(",") };
}

/**
 * Rewrites the top-level `model` to the provider's model id and, for streams, forces
 * `stream_options.include_usage = true`, byte-identically to envoy/usage.lua. A body that is not a JSON object is
 * returned unchanged (authz has already rejected those).
 */
export function rewriteRequestBody(body: string, upstreamModel: string, stream: boolean): string {
  const parsed = parseJson(body);
  if (!parsed.ok || !isObject(parsed.value)) return body;
  const open = skipWs(body, 0);
  const members = scanMembers(body, open);
  const edits: Edit[] = [];
  const adds: string[] = [];

  const encoded = JSON.stringify(upstreamModel);
  // Every duplicate is rewritten: parsers disagree on which duplicate wins, and none may reach the provider.
  const models = members.filter((m) => m.key === "model");
  for (const m of models) edits.push({ start: m.start, end: m.end, text: encoded });
  if (models.length === 0) adds.push(`"model":${encoded}`);

  if (stream) {
    const options = members.filter((m) => m.key === "stream_options");
    for (const m of options) {
      if (body[m.start] !== "{") {
        edits.push({ start: m.start, end: m.end, text: '{"include_usage":true}' });
        continue;
      }
      const inner = scanMembers(body, m.start);
      const flags = inner.filter((im) => im.key === "include_usage");
      for (const im of flags) edits.push({ start: im.start, end: im.end, text: "true" });
      if (flags.length === 0) edits.push(insertion(m.start, inner, ['"include_usage":true']));
    }
    if (options.length === 0) adds.push('"stream_options":{"include_usage":true}');
  }
  if (adds.length > 0) edits.push(insertion(open, members, adds));

  // Edits never overlap; applying them from the back keeps every earlier index valid.
  edits.sort((a, b) => b.start - a.start);
  let out = body;
  for (const e of edits) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}
