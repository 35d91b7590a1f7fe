import { Buffer } from "node:buffer";
import { hash } from "node:crypto";
import { BytePairEncodingCore } from "gpt-tokenizer/esm/BytePairEncodingCore";
import o200kRanks from "gpt-tokenizer/esm/bpeRanks/o200k_base";
import { createO200KSpecialTokenMap } from "gpt-tokenizer/esm/encodingParams/o200k_base";

/** Tokens OpenAI adds around every chat message (role and separators), per the OpenAI cookbook's counting rule. */
const TOKENS_PER_MESSAGE = 3;
/** Extra token when a message carries a `name`. */
const TOKENS_PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
const REPLY_PRIMING_TOKENS = 3;

/**
 * o200k_base's pre-tokenizer (tiktoken's pattern). Byte-pair merges never cross its pieces, so a text's tokens are
 * the sum of its pieces' tokens; a piece's merge costs time quadratic in its length, so long pieces are the
 * tokenizer's slow case (a run of one repeated character is one piece).
 */
const CONTRACTION = String.raw`(?:'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]))?`;
const PIECES = new RegExp(
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+${CONTRACTION}` +
    String.raw`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*${CONTRACTION}` +
    String.raw`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  "gu",
);

/**
 * gpt-tokenizer's o200k_base byte-pair merges, applied to one piece of PIECES at a time: its splitter hands the piece
 * back whole. Its own splitter (String.prototype.matchAll) would copy its pattern on every call, and V8 keeps a
 * pattern's compiled code in a cache that forgets it after two full garbage collections in which the pattern was not
 * copied: a Check after a quiet spell would then pay the pattern's whole compilation. PIECES is one long-lived object,
 * and V8 keeps its code. The splitter is not a RegExp: BytePairEncodingCore only calls `text.matchAll(splitter)`, which
 * calls the splitter's Symbol.matchAll (the version is pinned, and test/unit/domain.test.ts compares counts with
 * gpt-tokenizer's own). Allowing no special token makes client text such as "<|endoftext|>" ordinary text, as it is to
 * a chat API (never a special token, never a throw).
 */
const merges = new BytePairEncodingCore({
  bytePairRankDecoder: o200kRanks,
  specialTokensEncoder: createO200KSpecialTokenMap(),
  tokenSplitRegex: { [Symbol.matchAll]: (piece: string) => [[piece]] } as unknown as RegExp,
});
const NO_SPECIAL_TOKENS = new Set<string>();

/** The o200k tokens of one piece of PIECES. */
const pieceTokens = (piece: string) => merges.countNative(piece, NO_SPECIAL_TOKENS);

/** Pieces longer than this count as their UTF-8 bytes (every o200k token is at least one byte) instead of merged. */
const MAX_PIECE_LENGTH = 64;
/** Characters of text one estimate may run through the pre-tokenizer; texts that do not fit count as bytes. */
const SCAN_BUDGET = 32 * 1024;
/**
 * Work one estimate may spend merging pieces not seen before, in characters plus MERGE_CALL_COST per piece (a call
 * costs far more than a character); the unseen pieces past it count as bytes.
 */
const MERGE_BUDGET = 2048;
const MERGE_CALL_COST = 8;
/** What scanning one text costs beyond its characters, so thousands of tiny distinct texts also exhaust the budget. */
const TEXT_SCAN_COST = 16;

/** Texts at least this long are worth a cache lookup: hashing them costs a fraction of tokenizing them. */
const CACHE_MIN_LENGTH = 128;
/** Bounded by entry count; each entry is a 44-character digest and a number, about 150 bytes. */
const CACHE_MAX_ENTRIES = 50_000;
const cache = new Map<string, number>();
/**
 * Token counts of short strings seen before (pieces, and whole texts of at most MAX_PIECE_LENGTH characters, each
 * counted standalone): words, roles and short messages recur across requests.
 */
const PIECE_CACHE_MAX_ENTRIES = 100_000;
const pieceCache = new Map<string, number>();

/**
 * What one estimate may still spend on exact counting. Past it, text counts as its UTF-8 byte length: an upper
 * bound of its tokens that costs a native byte count, so an estimate's work is linear in the body and its
 * tokenizer work bounded by a constant.
 */
export interface TokenBudget {
  scan: number;
  merge: number;
}

/** A fresh budget for one request's estimate. */
export function tokenBudget(): TokenBudget {
  return { scan: SCAN_BUDGET, merge: MERGE_BUDGET };
}

/** UTF-8 length of a string: no text has more o200k tokens than bytes. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/**
 * Counts the tokens of plain text with the o200k_base encoding (GPT-4o and later; a close proxy for other vendors),
 * exactly and without bound: for text Tollgate produces (the mock provider). Client text goes through
 * `estimateTextTokens`, whose work is bounded.
 */
export function countTextTokens(text: string): number {
  return sumPieces(text, pieceTokens);
}

/**
 * An upper bound of a text's o200k tokens that is exact for ordinary text: pieces are counted exactly while the
 * budget lasts and when no longer than MAX_PIECE_LENGTH; anything else counts its UTF-8 bytes. Long texts are
 * memoised by their SHA-256 digest (chat clients resend the system prompt and the whole history on every turn);
 * keying by digest keeps no prompt text in memory and cannot be steered by a crafted collision. Only counts that
 * did not depend on the budget are memoised, so a cached count is the same whatever request computed it.
 */
export function estimateTextTokens(text: string, budget: TokenBudget): number {
  if (text.length === 0) return 0;
  const short = text.length <= MAX_PIECE_LENGTH;
  if (short) {
    const known = pieceCache.get(text);
    if (known !== undefined) return known;
  }
  if (text.length + TEXT_SCAN_COST > budget.scan) return utf8Length(text);
  const digest = text.length >= CACHE_MIN_LENGTH ? hash("sha256", text, "base64") : undefined;
  if (digest !== undefined) {
    const hit = cache.get(digest);
    if (hit !== undefined) {
      // Refresh recency: Map iteration order is insertion order, so the oldest entry is evicted first.
      cache.delete(digest);
      cache.set(digest, hit);
      return hit;
    }
  }
  budget.scan -= text.length + TEXT_SCAN_COST;
  const count = countPieces(text, budget);
  if (count.exact && digest !== undefined) remember(cache, CACHE_MAX_ENTRIES, digest, count.tokens);
  else if (count.exact && short) remember(pieceCache, PIECE_CACHE_MAX_ENTRIES, text, count.tokens);
  return count.tokens;
}

function countPieces(text: string, budget: TokenBudget): { tokens: number; exact: boolean } {
  let exact = true;
  const tokens = sumPieces(text, (piece) => {
    if (piece.length > MAX_PIECE_LENGTH) return utf8Length(piece);
    const known = pieceCache.get(piece);
    if (known !== undefined) return known;
    if (budget.merge < piece.length + MERGE_CALL_COST) {
      exact = false;
      return utf8Length(piece);
    }
    budget.merge -= piece.length + MERGE_CALL_COST;
    const counted = pieceTokens(piece);
    remember(pieceCache, PIECE_CACHE_MAX_ENTRIES, piece, counted);
    return counted;
  });
  return { tokens, exact };
}

/** The sum of `count` over the pieces of `text`, in order. `count` must not scan with PIECES: this scan owns it. */
function sumPieces(text: string, count: (piece: string) => number): number {
  let tokens = 0;
  let at = 0;
  PIECES.lastIndex = 0;
  for (let match = PIECES.exec(text); match !== null; match = PIECES.exec(text)) {
    // Every character matches some alternative; a gap would be text the tokenizer drops, counted high all the same.
    if (match.index !== at) tokens += utf8Length(text.slice(at, match.index));
    at = PIECES.lastIndex;
    tokens += count(match[0]);
  }
  if (at < text.length) tokens += utf8Length(text.slice(at));
  return tokens;
}

/**
 * Texts that take the estimate through its one-time set-up: the merges' first calls, and the pre-tokenizer pattern,
 * which V8 compiles on first use (interpreted for one run, then to machine code) and again for the first string of
 * its other representation: one byte per character for ASCII and Latin-1 text, two for any text with a character
 * outside Latin-1 (CJK, emoji, and also "—" or "€").
 */
const WARM_UP_TEXTS = ["Hello, world! It's 2026: a warm-up.", "中文 😀 e\u0301 ǅ ⅷ 𝔘 مرحبا — €"];

/** Pays the estimate's one-time set-up now (at start-up), so no Check pays it. */
export function warmUpTokenEstimate(): void {
  for (const text of WARM_UP_TEXTS)
    countPieces(text, { scan: Number.POSITIVE_INFINITY, merge: Number.POSITIVE_INFINITY });
}

function remember(map: Map<string, number>, max: number, key: string, value: number): void {
  if (map.size >= max) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/**
 * Top-level members the prompt estimate models itself (messages, tool and function definitions), or that are not
 * prompt (`model`; `prediction`, bounded as output). Every other member's text counts: providers inject some of them
 * into the prompt (`response_format`'s JSON schema), so the bound covers the whole body's text.
 */
const MODELLED_MEMBERS = new Set(["model", "messages", "tools", "functions", "prediction"]);
/** Content part types that are text: anything else (image, file, audio, unknown) is priced by what we cannot see. */
const TEXT_PART_TYPES = new Set(["text", "refusal"]);

/** A chat prompt's bound: its text tokens, and whether it carries parts whose tokens its bytes do not bound. */
export interface PromptEstimate {
  tokens: number;
  /** An image, file, audio or unknown content part (or an audio reference): admission reserves the whole window. */
  media: boolean;
}

/**
 * Estimates the prompt tokens of an OpenAI chat request the way OpenAI counts them: per-message overhead, content
 * (string or parts), names, tool calls and tool definitions, plus the text of every other top-level member that is
 * not a scalar. Unknown shapes count their JSON text, so the estimate errs high rather than low: it feeds
 * reservations, which must cover the worst case. Work is linear in the body (the body's nesting must already be
 * bounded: JSON.stringify recurses) and the tokenizer's share is bounded by `budget`.
 */
export function estimateChatPrompt(
  body: Readonly<Record<string, unknown>>,
  budget: TokenBudget = tokenBudget(),
): PromptEstimate {
  const seen = { media: false };
  const text = (value: string) => estimateTextTokens(value, budget);
  let total = REPLY_PRIMING_TOKENS;
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    total += TOKENS_PER_MESSAGE;
    if (message === null || typeof message !== "object") {
      total += text(JSON.stringify(message) ?? "");
      continue;
    }
    for (const field in message) {
      if (!Object.hasOwn(message, field)) continue;
      const value = (message as Record<string, unknown>)[field];
      if (field === "content") total += contentTokens(value, text, seen);
      else if (field === "name" && typeof value === "string") total += text(value) + TOKENS_PER_NAME;
      else if (typeof value === "string") total += text(value);
      else if (value !== null && value !== undefined) {
        // An assistant message's `audio` names an earlier spoken reply, which the provider feeds back as audio.
        if (field === "audio") seen.media = true;
        total += text(JSON.stringify(value));
      }
    }
  }
  for (const defs of [body.tools, body.functions]) {
    if (defs !== undefined && defs !== null) total += text(JSON.stringify(defs));
  }
  for (const member in body) {
    if (!Object.hasOwn(body, member) || MODELLED_MEMBERS.has(member)) continue;
    const value = body[member];
    if (typeof value === "string") total += text(value);
    else if (value !== null && typeof value === "object") total += text(JSON.stringify(value));
  }
  return { tokens: total, media: seen.media };
}

/** `estimateChatPrompt`'s token bound alone. */
export function estimateChatPromptTokens(
  body: Readonly<Record<string, unknown>>,
  budget: TokenBudget = tokenBudget(),
): number {
  return estimateChatPrompt(body, budget).tokens;
}

/**
 * An upper bound of the tokens of a Predicted Outputs `prediction` (its content, string or text parts): OpenAI bills
 * rejected predicted tokens as output, so they belong in the worst case.
 */
export function estimatePredictionTokens(prediction: unknown, budget: TokenBudget = tokenBudget()): number {
  if (prediction === null || prediction === undefined) return 0;
  const content =
    typeof prediction === "object" && !Array.isArray(prediction)
      ? (prediction as { content?: unknown }).content
      : prediction;
  return contentTokens(content, (value) => estimateTextTokens(value, budget));
}

function contentTokens(content: unknown, text: (value: string) => number, seen = { media: false }): number {
  if (typeof content === "string") return text(content);
  if (!Array.isArray(content)) return content == null ? 0 : text(JSON.stringify(content));
  let total = 0;
  for (const part of content) {
    const type = part && typeof part === "object" ? (part as { type?: unknown }).type : undefined;
    if (type === "text") {
      const value = (part as { text?: unknown }).text;
      total += typeof value === "string" ? text(value) : 0;
      continue;
    }
    // Images bill by pixels and detail, files by pages, audio by seconds: none is bounded by its JSON text.
    if (typeof type !== "string" || !TEXT_PART_TYPES.has(type)) seen.media = true;
    total += text(JSON.stringify(part) ?? "");
  }
  return total;
}
