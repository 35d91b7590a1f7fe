/** What a test asked the mock provider to do, written as `[[mock:name=value]]` in the last user message. */
export interface MockDirectives {
  /** Reply with exactly this many completion tokens. */
  tokens?: number;
  /** Answer with this HTTP status and an OpenAI error body instead of a completion. */
  error?: number;
  /** Milliseconds to wait between stream events (once before a JSON reply). */
  slow?: number;
  /** Destroy the socket after this many content chunks (before any byte of a JSON reply). */
  cut?: number;
  /** Cached prompt tokens to report. */
  cached?: number;
  /** Reasoning tokens to report, counted inside completion_tokens as OpenAI does. */
  reasoning?: number;
  /**
   * 1: gzip the reply (JSON or SSE) whenever the request's Accept-Encoding allows it (absent counts as allowing);
   * "force": gzip it even when the request asks for identity, as a misbehaving provider or proxy does.
   */
  gzip?: number | "force";
}

/** Directives parsed from a message, or why they are unusable: a typo in a test must fail loudly, not be ignored. */
export type DirectiveParse = { ok: true; directives: MockDirectives } | { ok: false; message: string };

const DIRECTIVE = /\[\[mock:([a-z]+)=([^\]]*)\]\]/g;
const NAMES = new Set<keyof MockDirectives>(["tokens", "error", "slow", "cut", "cached", "reasoning", "gzip"]);

/** Lets tests steer each request from its prompt alone, so they need no side channel to the mock. */
export function parseDirectives(text: string): DirectiveParse {
  const directives: MockDirectives = {};
  for (const [, name, raw] of text.matchAll(DIRECTIVE)) {
    if (!NAMES.has(name as keyof MockDirectives)) return { ok: false, message: `unknown mock directive "${name}"` };
    if (name === "gzip" && raw === "force") {
      directives.gzip = "force";
      continue;
    }
    if (!/^\d{1,9}$/.test(raw ?? "")) {
      return { ok: false, message: `mock directive "${name}" needs a non-negative integer, got "${raw}"` };
    }
    const value = Number(raw);
    if (name === "error" && (value < 400 || value > 599)) {
      return { ok: false, message: `mock directive "error" needs a 4xx or 5xx status, got ${value}` };
    }
    directives[name as keyof MockDirectives] = value;
  }
  return { ok: true, directives };
}

/** The message as a human wrote it, so the default reply does not echo the test's directives back. */
export function stripDirectives(text: string): string {
  return text.replace(DIRECTIVE, "").replace(/\s+/g, " ").trim();
}
