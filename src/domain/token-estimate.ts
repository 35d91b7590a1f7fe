import { hash } from "node:crypto";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/** Tokens OpenAI adds around every chat message (role and separators), per the OpenAI cookbook's counting rule. */
const TOKENS_PER_MESSAGE = 3;
/** Extra token when a message carries a `name`. */
const TOKENS_PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
const REPLY_PRIMING_TOKENS = 3;
/** A conservative flat charge for an image part (a high-detail 512px tile set); we cannot see pixels at admission. */
const IMAGE_PART_TOKENS = 765;

/** Texts at least this long are worth a cache lookup: hashing them costs a fraction of tokenizing them. */
const CACHE_MIN_LENGTH = 128;
/** Bounded by entry count; each entry is a 44-character digest and a number, about 150 bytes. */
const CACHE_MAX_ENTRIES = 50_000;
const cache = new Map<string, number>();
/** Role names come with every message; their counts are fixed, so they are counted once. */
const ROLES = new Map(["system", "developer", "user", "assistant", "tool", "function"].map((role) => [role, countTokens(role)]));

/**
 * Counts the tokens of plain text with the o200k_base encoding (GPT-4o and later; a close proxy for other vendors).
 * Long texts are memoised by their SHA-256 digest: chat clients resend the system prompt and the whole history on
 * every turn, so most of a request's text was counted before. Keying by digest keeps no prompt text in memory and
 * cannot be steered by a crafted collision.
 */
export function countTextTokens(text: string): number {
  if (text.length === 0) return 0;
  if (text.length < CACHE_MIN_LENGTH) return ROLES.get(text) ?? countTokens(text);
  const digest = hash("sha256", text, "base64");
  const hit = cache.get(digest);
  if (hit !== undefined) {
    // Refresh recency: Map iteration order is insertion order, so the oldest entry is evicted first.
    cache.delete(digest);
    cache.set(digest, hit);
    return hit;
  }
  const count = countTokens(text);
  if (cache.size >= CACHE_MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(digest, count);
  return count;
}

/**
 * Estimates the prompt tokens of an OpenAI chat request the way OpenAI counts them: per-message overhead, content
 * (string or parts), names, tool calls and tool definitions. Unknown shapes count their JSON text, so the estimate
 * errs high rather than low: it feeds reservations, which must cover the worst case.
 */
export function estimateChatPromptTokens(body: { messages?: unknown; tools?: unknown; functions?: unknown }): number {
  let total = REPLY_PRIMING_TOKENS;
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    total += TOKENS_PER_MESSAGE;
    if (message === null || typeof message !== "object") {
      total += countTextTokens(JSON.stringify(message) ?? "");
      continue;
    }
    for (const field in message) {
      if (!Object.hasOwn(message, field)) continue;
      const value = (message as Record<string, unknown>)[field];
      if (field === "content") total += contentTokens(value);
      else if (field === "name" && typeof value === "string") total += countTextTokens(value) + TOKENS_PER_NAME;
      else if (typeof value === "string") total += countTextTokens(value);
      else if (value !== null && value !== undefined) total += countTextTokens(JSON.stringify(value));
    }
  }
  for (const defs of [body.tools, body.functions]) {
    if (defs !== undefined && defs !== null) total += countTextTokens(JSON.stringify(defs));
  }
  return total;
}

function contentTokens(content: unknown): number {
  if (typeof content === "string") return countTextTokens(content);
  if (!Array.isArray(content)) return content == null ? 0 : countTextTokens(JSON.stringify(content));
  let total = 0;
  for (const part of content) {
    if (part && typeof part === "object" && (part as { type?: unknown }).type === "text") {
      const text = (part as { text?: unknown }).text;
      total += typeof text === "string" ? countTextTokens(text) : 0;
    } else if (part && typeof part === "object" && (part as { type?: unknown }).type === "image_url") {
      total += IMAGE_PART_TOKENS;
    } else {
      total += countTextTokens(JSON.stringify(part) ?? "");
    }
  }
  return total;
}
