import { countTextTokens, estimateChatPromptTokens } from "../domain/token-estimate.js";
import { parseDirectives, stripDirectives } from "./directives.js";

/** The fields of an OpenAI chat request that the mock acts on; `body` keeps the rest for recording and counting. */
export interface ChatRequest {
  model: string;
  messages: unknown[];
  stream: boolean;
  includeUsage: boolean;
  /** `max_completion_tokens`, else `max_tokens`, as OpenAI resolves them. */
  maxTokens: number | undefined;
  body: Record<string, unknown>;
}

/** OpenAI's usage object, with the details the meter bills from. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** Everything needed to answer one request, decided before a byte is written so JSON and stream replies agree. */
export type ReplyPlan =
  | { kind: "error"; status: number; message: string }
  | {
      kind: "completion";
      text: string;
      /** `text` split into stream deltas of a few tokens each; joined they equal `text`. */
      chunks: string[];
      finishReason: "stop" | "length";
      usage: Usage;
      slowMs: number;
      cutAfter: number | undefined;
      /** Compress the reply: when the request accepts gzip ("allowed"), or whatever it asks for ("force"). */
      gzip: "off" | "allowed" | "force";
    };

/** A request's validation failure, OpenAI-style, so clients see the same 400 they would get from OpenAI. */
export type ChatRequestParse =
  | { ok: true; request: ChatRequest }
  | { ok: false; message: string; param: string | null };

const DEFAULT_REPLY_PREFIX = "Mock reply to: ";
const ECHO_CHARS = 40;
const WORDS_PER_CHUNK = 3;

/** Checks the body the way OpenAI does before anything else, so a gateway bug that mangles bodies shows up as a 400. */
export function parseChatRequest(json: unknown): ChatRequestParse {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return { ok: false, message: "The request body must be a JSON object.", param: null };
  }
  const body = json as Record<string, unknown>;
  if (typeof body.model !== "string" || body.model === "") {
    return { ok: false, message: "you must provide a model parameter", param: "model" };
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    return { ok: false, message: "'messages' must be a non-empty array.", param: "messages" };
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (maxTokens !== undefined && maxTokens !== null && !(Number.isInteger(maxTokens) && (maxTokens as number) >= 0)) {
    return { ok: false, message: "max_tokens must be a non-negative integer.", param: "max_tokens" };
  }
  const streamOptions = body.stream_options as { include_usage?: unknown } | null | undefined;
  return {
    ok: true,
    request: {
      model: body.model,
      messages: body.messages,
      stream: body.stream === true,
      includeUsage: streamOptions?.include_usage === true,
      maxTokens: typeof maxTokens === "number" ? maxTokens : undefined,
      body,
    },
  };
}

/** Decides the reply deterministically from the prompt, counting every token with the gateway's own tokenizer. */
export function planReply(request: ChatRequest): ReplyPlan {
  const prompt = lastUserText(request.messages);
  const parsed = parseDirectives(prompt);
  if (!parsed.ok) return { kind: "error", status: 400, message: parsed.message };
  const { directives } = parsed;
  if (directives.error !== undefined) {
    const message = `Mock provider error ${directives.error} (requested by directive).`;
    return { kind: "error", status: directives.error, message };
  }

  // max_completion_tokens bounds reasoning and visible text together; reasoning is spent first.
  const limit = request.maxTokens ?? Number.POSITIVE_INFINITY;
  const reasoning = Math.min(directives.reasoning ?? 0, limit);
  const budget = limit - reasoning;
  let text: string;
  let truncated = reasoning < (directives.reasoning ?? 0);
  if (directives.tokens !== undefined) {
    text = textOfTokens(Math.min(directives.tokens, budget));
    truncated ||= directives.tokens > budget;
  } else {
    const full = DEFAULT_REPLY_PREFIX + stripDirectives(prompt).slice(0, ECHO_CHARS);
    text = truncateToTokens(full, budget);
    truncated ||= text !== full;
  }

  const promptTokens = estimateChatPromptTokens(request.body);
  const completionTokens = countTextTokens(text) + reasoning;
  return {
    kind: "completion",
    text,
    chunks: splitIntoChunks(text),
    finishReason: truncated ? "length" : "stop",
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: directives.cached ?? 0 },
      completion_tokens_details: { reasoning_tokens: reasoning },
    },
    slowMs: directives.slow ?? 0,
    cutAfter: directives.cut,
    gzip: directives.gzip === "force" ? "force" : (directives.gzip ?? 0) > 0 ? "allowed" : "off",
  };
}

/** Text that the o200k_base tokenizer counts as exactly `n` tokens ("mock" and " mock" are one token each). */
export function textOfTokens(n: number): string {
  return n <= 0 ? "" : "mock" + " mock".repeat(n - 1);
}

/** The longest prefix of `text` within `maxTokens`, found by counting only, so it follows whatever tokenizer counts. */
function truncateToTokens(text: string, maxTokens: number): string {
  if (countTextTokens(text) <= maxTokens) return text;
  let low = 0; // a prefix length known to fit
  let high = text.length; // a prefix length known not to fit
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (countTextTokens(text.slice(0, mid)) <= maxTokens) low = mid;
    else high = mid;
  }
  // Never leave half of a surrogate pair at the end.
  const last = text.charCodeAt(low - 1);
  return last >= 0xd800 && last <= 0xdbff ? text.slice(0, low - 1) : text.slice(0, low);
}

function splitIntoChunks(text: string): string[] {
  const words = text.match(/\s*\S+|\s+$/g) ?? [];
  const chunks: string[] = [];
  for (let i = 0; i < words.length; i += WORDS_PER_CHUNK) chunks.push(words.slice(i, i + WORDS_PER_CHUNK).join(""));
  return chunks;
}

function lastUserText(messages: unknown[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i] as { role?: unknown; content?: unknown } | null;
    if (message === null || typeof message !== "object" || message.role !== "user") continue;
    if (typeof message.content === "string") return message.content;
    if (!Array.isArray(message.content)) return "";
    return message.content
      .map((part: { type?: unknown; text?: unknown } | null) =>
        part?.type === "text" && typeof part.text === "string" ? part.text : "",
      )
      .filter((t) => t !== "")
      .join(" ");
  }
  return "";
}
