import { pino, type Logger } from "pino";

export type { Logger } from "pino";

/**
 * Anything shaped like a Tollgate key (tg_) or admin token (tga_), a bearer credential, or a stored hash (an admin
 * token's sha256 in hex, a key's sha256 in base64url: 43 characters) is replaced before it is written. Hashes reach
 * logs inside driver errors that quote a query's bound values.
 */
const SECRET_PATTERNS: RegExp[] = [
  /tga?_[A-Za-z0-9]{4,}/g,
  /(bearer\s+)[^\s"',]+/gi,
  /(?<![0-9A-Za-z])[0-9a-fA-F]{64}(?![0-9A-Za-z])/g,
  // A base64url digest has an upper-case letter or a hyphen (all but about 1 in 10^10 do); snake_case names do not.
  /(?<![\w-])(?=[\w-]{0,42}[A-Z-])[\w-]{43}(?![\w-])/g,
];
const REDACTED = "[redacted]";

/** Removes secrets from a string; used by the logger and by anything that echoes client input. */
export function scrub(text: string): string {
  let out = text;
  for (const pattern of SECRET_PATTERNS)
    out = out.replace(pattern, (_m, lead?: string) => (typeof lead === "string" ? lead + REDACTED : REDACTED));
  return out;
}

function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return scrub(value);
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) {
    const copy = new Error(scrub(value.message));
    copy.name = value.name;
    copy.stack = value.stack ? scrub(value.stack) : undefined;
    return copy;
  }
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubDeep(v, depth + 1);
  return out;
}

/**
 * Creates the process logger (JSON lines on stdout, or `destination`). Secrets are removed at the logger, not at
 * call sites: known secret fields are redacted by path, and every string argument is scrubbed of key-shaped text.
 */
export function createLogger(
  options: { level?: string; destination?: NodeJS.WritableStream; base?: Record<string, unknown> } = {},
): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: options.base ?? { pid: process.pid },
      redact: {
        paths: [
          "authorization",
          "*.authorization",
          "headers.authorization",
          "secret",
          "*.secret",
          "secretHash",
          "*.secretHash",
          "secret_hash",
          "*.secret_hash",
          "tokenHash",
          "*.tokenHash",
          "token_hash",
          "*.token_hash",
          "api_key",
          "*.api_key",
        ],
        censor: REDACTED,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => scrubDeep(a)) as Parameters<typeof method>);
        },
      },
    },
    options.destination ?? process.stdout,
  );
}
