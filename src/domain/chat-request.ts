import { estimateChatPrompt, estimatePredictionTokens, tokenBudget } from "./token-estimate.js";
import { deny, type Deny } from "./verdict.js";

/** The fields of an OpenAI chat-completions body that admission decides on. */
export interface ChatRequest {
  model: string;
  stream: boolean;
  /** max_completion_tokens, else max_tokens; undefined when the client set neither. */
  maxOutputTokens: number | undefined;
  /** `n`: how many choices the provider generates (and bills), each up to maxOutputTokens. */
  choices: number;
  body: Record<string, unknown>;
}

/** Deepest JSON nesting a chat body may have: real bodies (tool schemas included) stay far below it. */
export const MAX_BODY_DEPTH = 64;
/**
 * Most objects, arrays and members (counted as commas) a chat body may have. A conversation of a thousand messages
 * with 128 tool schemas stays below it (and near it a prompt outgrows any context window); it bounds JSON.parse's
 * allocations and property insertions, the costly part of parsing (and superlinear for one object's distinct keys).
 */
export const MAX_BODY_ELEMENTS = 16_384;
/** OpenAI's bound on `n`. */
export const MAX_CHOICES = 128;
/** Service tiers billed at the catalogue's prices or below; `priority` and `scale` are billed above them. */
const SERVICE_TIERS = new Set(["auto", "default", "flex"]);

/** The request body as the data plane handed it over. */
export type RequestBody =
  | { kind: "absent" }
  | { kind: "partial" }
  | { kind: "text"; text: string }
  /** A proto string's bytes not decoded yet (a large one is decoded where it is read): text, so a BOM is kept. */
  | { kind: "utf8"; bytes: Uint8Array }
  | { kind: "bytes"; bytes: Uint8Array };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
/** For proto strings, as protobuf decodes them: a BOM is a character (and JSON.parse refuses it). */
const utf8Text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parses and validates a chat-completions body; every refusal names what is wrong and, where it is a field, which. */
export function parseChatRequest(body: RequestBody): ChatRequest | Deny {
  if (body.kind === "partial") {
    return deny("request_too_large", "Request body exceeds the gateway's body limit and cannot be inspected.");
  }
  let text: string;
  if (body.kind === "absent") text = "";
  else if (body.kind === "text") text = body.text;
  else {
    try {
      text = (body.kind === "utf8" ? utf8Text : utf8).decode(body.bytes);
    } catch {
      return deny("invalid_request", "Request body is not valid UTF-8.");
    }
  }
  if (text.trim().length === 0) return deny("invalid_request", "Request body is empty; expected a JSON object.");
  // JSON.parse of deep nesting or of hundreds of thousands of tiny values costs far more per byte than of text
  // (its allocations), and later steps recurse: the shape is checked first, in one pass.
  const shape = scanStructure(text, MAX_BODY_DEPTH, MAX_BODY_ELEMENTS, false);
  if (shape === "deep") return deny("invalid_request", `Request body is nested deeper than ${MAX_BODY_DEPTH} levels.`);
  if (shape === "wide") {
    return deny(
      "invalid_request",
      `Request body has more than ${MAX_BODY_ELEMENTS} JSON elements (objects, arrays and their members).`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return deny("invalid_request", "Request body is not valid JSON.");
  }
  // JSON.parse keeps the last of equal keys, a provider's parser may keep the first: what authz reserved for could
  // then differ from what the provider runs ("max_tokens":100000,"max_tokens":1, or a message's "content" twice).
  // Every member the text has is a key of the parsed value unless an object repeats a name (a repeated member, and
  // whatever its first value held, is gone), so equal counts prove there is none; only a mismatch pays for the scan
  // that names the member.
  if (typeof shape === "number" && countMembers(parsed) !== shape) {
    const repeated = scanStructure(text, MAX_BODY_DEPTH, MAX_BODY_ELEMENTS, true);
    if (typeof repeated === "object") {
      // The name is echoed at most 64 characters long (a repeated name may be most of a 1 MiB body).
      const name = repeated.duplicate.length > 64 ? `${repeated.duplicate.slice(0, 64)}…` : repeated.duplicate;
      return deny("invalid_request", `Request body repeats the member '${name}'; send each member of an object once.`, {
        param: name,
      });
    }
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return deny("invalid_request", "Request body must be a JSON object.");
  }
  const fields = parsed as Record<string, unknown>;
  if (!("model" in fields)) return deny("invalid_request", "Missing required parameter: 'model'.", { param: "model" });
  if (typeof fields.model !== "string" || fields.model.length === 0) {
    return deny("invalid_request", "Invalid type for 'model': expected a non-empty string.", { param: "model" });
  }
  if (!Array.isArray(fields.messages) || fields.messages.length === 0) {
    return deny("invalid_request", "Invalid 'messages': expected a non-empty array.", { param: "messages" });
  }
  if (fields.stream !== undefined && fields.stream !== null && typeof fields.stream !== "boolean") {
    return deny("invalid_request", "Invalid type for 'stream': expected a boolean.", { param: "stream" });
  }
  let maxOutputTokens: number | undefined;
  for (const param of ["max_tokens", "max_completion_tokens"] as const) {
    const value = fields[param];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
      return deny("invalid_request", `Invalid '${param}': expected a positive integer.`, { param });
    }
    maxOutputTokens = param === "max_completion_tokens" || maxOutputTokens === undefined ? value : maxOutputTokens;
  }
  const choices = fields.n ?? 1;
  if (typeof choices !== "number" || !Number.isInteger(choices) || choices < 1 || choices > MAX_CHOICES) {
    return deny("invalid_request", `Invalid 'n': expected an integer from 1 to ${MAX_CHOICES}.`, { param: "n" });
  }
  const refusal = unpricedOutput(fields);
  if (refusal) return refusal;
  return { model: fields.model, stream: fields.stream === true, maxOutputTokens, choices, body: fields };
}

/** A chat request's admission fields without its body, and its token bounds when admission will need them. */
export interface ChatFacts extends Omit<ChatRequest, "body"> {
  /**
   * Present when the model was servable: the prompt estimate, the predicted-output bound (see token-estimate), and
   * whether the prompt has image, file or audio parts, whose tokens no reading of the body bounds.
   */
  tokens?: { prompt: number; prediction: number; media: boolean };
}

/**
 * Everything admission reads from a chat body, in one step that needs no other state, so it can run where the body
 * is (another thread, for large bodies). The tokens are counted only when `servable(model)` says admission will go
 * on to reserve (a model that exists, is not retired and the key may use): refusals cost no estimate.
 */
export function readChat(body: RequestBody, servable: (model: string) => boolean): ChatFacts | Deny {
  const chat = parseChatRequest(body);
  if ("kind" in chat) return chat;
  const { model, stream, maxOutputTokens, choices, body: fields } = chat;
  if (!servable(model)) return { model, stream, maxOutputTokens, choices };
  // Bounded work (see tokenBudget): upper bounds that are exact for ordinary text.
  const budget = tokenBudget();
  const prompt = estimateChatPrompt(fields, budget);
  return {
    model,
    stream,
    maxOutputTokens,
    choices,
    tokens: {
      prompt: prompt.tokens,
      prediction: estimatePredictionTokens(fields.prediction, budget),
      media: prompt.media,
    },
  };
}

/** Output the catalogue's per-token text prices cannot bound (so no reservation can cover it) is refused up front. */
function unpricedOutput(fields: Record<string, unknown>): Deny | undefined {
  const tier = fields.service_tier;
  if (tier !== undefined && tier !== null && (typeof tier !== "string" || !SERVICE_TIERS.has(tier))) {
    return deny(
      "invalid_request",
      "Invalid 'service_tier': this gateway offers 'auto', 'default' or 'flex' (other tiers are billed above its prices).",
      { param: "service_tier" },
    );
  }
  const modalities = fields.modalities;
  if (
    (Array.isArray(modalities) && modalities.some((m) => m !== "text")) ||
    (fields.audio !== undefined && fields.audio !== null)
  ) {
    return deny(
      "invalid_request",
      "Audio output is not supported by this gateway: it is billed at prices the gateway does not hold.",
      { param: Array.isArray(modalities) ? "modalities" : "audio" },
    );
  }
  return undefined;
}

/**
 * Reads JSON text's structure in one pass that skips string contents with indexOf (so long strings cost native
 * speed): "deep" at the first array or object nested past `maxDepth`, "wide" once objects, arrays and commas outside
 * strings exceed `maxElements`; else how many object members it has. With `findDuplicate` it also returns the first
 * member name an object repeats, at any depth (as JSON.parse decodes names, so an escaped spelling is the same name).
 * Text that is not JSON may pass; JSON.parse then refuses it.
 */
export function scanStructure(
  text: string,
  maxDepth: number,
  maxElements: number,
  findDuplicate: boolean,
): "deep" | "wide" | { duplicate: string } | number {
  let depth = 0;
  let elements = 0;
  let members = 0;
  // Per open container: whether it is an object, and (findDuplicate) its member names so far.
  const isObject: boolean[] = [false];
  const names: Array<Set<string>> = [];
  let nameNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const close = closingQuote(text, i);
      if (close === -1) return members;
      if (nameNext) {
        nameNext = false;
        members++;
        if (findDuplicate) {
          const name = memberName(text, i, close);
          const seen = names[depth]!;
          if (name !== undefined) {
            if (seen.has(name)) return { duplicate: name };
            seen.add(name);
          }
        }
      }
      i = close;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return "deep";
      if (++elements > maxElements) return "wide";
      nameNext = c === OPEN_OBJECT;
      isObject[depth] = nameNext;
      if (findDuplicate && nameNext) names[depth] = new Set();
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (depth > 0) depth--;
      nameNext = false;
    } else if (c === COMMA) {
      if (++elements > maxElements) return "wide";
      nameNext = isObject[depth] === true;
    }
  }
  return members;
}

/** How many members the objects in a parsed JSON value have in all (its depth was bounded by the scan). */
function countMembers(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (const v of value) if (v !== null && typeof v === "object") n += countMembers(v);
    return n;
  }
  for (const key in value) {
    // Own members only: a property someone added to Object.prototype must not make up for a repeated member.
    if (!Object.hasOwn(value, key)) continue;
    n++;
    const v = (value as Record<string, unknown>)[key];
    if (v !== null && typeof v === "object") n += countMembers(v);
  }
  return n;
}

/** The member name quoted from `open` to `close` as JSON.parse reads it; undefined when its escapes are malformed. */
function memberName(text: string, open: number, close: number): string | undefined {
  const raw = text.slice(open + 1, close);
  if (!raw.includes("\\")) return raw;
  try {
    return JSON.parse(text.slice(open, close + 1)) as string;
  } catch {
    return undefined;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/** Index of the quote closing the string opened at `open`, or -1: a quote after an odd run of backslashes is escaped. */
function closingQuote(text: string, open: number): number {
  for (let from = open + 1; ; ) {
    const at = text.indexOf('"', from);
    if (at === -1) return -1;
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
    from = at + 1;
  }
}
