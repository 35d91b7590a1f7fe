/** Money in integer nano-USD (1e-9 USD). Branded so that no plain number or bigint is mistaken for money. */
export type Nanos = bigint & { readonly __brand: "Nanos" };
/** A per-token price in integer pico-USD (1e-12 USD): exact for every published per-million-token price. */
export type PicoPerToken = bigint & { readonly __brand: "PicoPerToken" };

const PICO_PER_NANO = 1000n;

/** Brands a bigint as nano-USD; the only way money values come into being. */
export function nanos(value: bigint): Nanos {
  return value as Nanos;
}

/** Brands a bigint as a pico-USD per-token price. */
export function picoPerToken(value: bigint): PicoPerToken {
  if (value < 0n) throw new RangeError("a price cannot be negative");
  return value as PicoPerToken;
}

/** Cost of `tokens` at `price`, rounded up to the next nano-USD (DESIGN: a request's cost is rounded up). */
export function tokenCost(tokens: number | bigint, price: PicoPerToken): Nanos {
  const picos = BigInt(tokens) * price;
  return nanos((picos + PICO_PER_NANO - 1n) / PICO_PER_NANO);
}

/** An exact amount in pico-USD (1e-12 USD): the sum of a request's parts before its single rounding. */
export type Picos = bigint & { readonly __brand: "Picos" };

/** Exact pico-USD cost of `tokens` at `price` (no rounding). */
export function picoCost(tokens: number | bigint, price: PicoPerToken): Picos {
  return (BigInt(tokens) * price) as Picos;
}

/** Rounds an exact pico-USD total up to the next nano-USD: the one rounding a request's cost gets. */
export function ceilToNanos(value: Picos): Nanos {
  if (value < 0n) throw new RangeError("a cost cannot be negative");
  return nanos((value + PICO_PER_NANO - 1n) / PICO_PER_NANO);
}

/** Token counts a request is billed for, in OpenAI's usage semantics. */
export interface BilledTokens {
  /** All prompt tokens, cached ones included. */
  promptTokens: number | bigint;
  /** The subset of `promptTokens` read from the provider's cache, billed at the cached price. */
  cachedTokens: number | bigint;
  /** All output tokens; reasoning tokens are already inside this count and are never billed twice. */
  completionTokens: number | bigint;
}

/**
 * A request's cost: (prompt − cached) × input + cached × cached_input + completion × output, summed exactly in
 * pico-USD and rounded up to the next nano-USD once, so a request is never charged for several roundings.
 */
export function requestCost(
  tokens: BilledTokens,
  prices: { input: PicoPerToken; cachedInput: PicoPerToken; output: PicoPerToken },
): Nanos {
  const prompt = BigInt(tokens.promptTokens);
  const cached = BigInt(tokens.cachedTokens);
  const completion = BigInt(tokens.completionTokens);
  if (prompt < 0n || cached < 0n || completion < 0n) throw new RangeError("token counts cannot be negative");
  if (cached > prompt) throw new RangeError("cached tokens are a subset of prompt tokens and cannot exceed them");
  const total =
    picoCost(prompt - cached, prices.input) +
    picoCost(cached, prices.cachedInput) +
    picoCost(completion, prices.output);
  return ceilToNanos(total as Picos);
}

/** A share of `amount` in basis points (1/100 of a percent), rounded up to the next nano-USD. */
export function basisPoints(amount: Nanos, bps: number): Nanos {
  if (!Number.isInteger(bps) || bps < 0) throw new RangeError("basis points must be a non-negative integer");
  if (amount < 0n) throw new RangeError("amount cannot be negative");
  return nanos((amount * BigInt(bps) + 9_999n) / 10_000n);
}

/** Sum of nano-USD amounts. */
export function addNanos(...values: Nanos[]): Nanos {
  let total = 0n;
  for (const v of values) total += v;
  return nanos(total);
}

const DECIMAL = /^(\d+)(?:\.(\d{1,6}))?$/;

/**
 * Parses a price written as USD per million tokens ("1.25") into exact pico-USD per token. Published prices have at
 * most six decimals per million tokens, which is exactly one pico-USD per token, so no rounding ever happens here.
 */
export function parseUsdPerMillionTokens(text: string): PicoPerToken {
  const match = DECIMAL.exec(text.trim());
  if (!match) throw new RangeError(`"${text}" is not a price in USD per million tokens (up to 6 decimals)`);
  const whole = BigInt(match[1]!);
  const fraction = BigInt((match[2] ?? "").padEnd(6, "0"));
  return picoPerToken(whole * 1_000_000n + fraction);
}

/** Parses an amount of USD ("25", "0.5", up to 9 decimals) into exact nano-USD. */
export function parseUsd(text: string): Nanos {
  const match = /^(\d+)(?:\.(\d{1,9}))?$/.exec(text.trim());
  if (!match) throw new RangeError(`"${text}" is not an amount of USD (digits, up to 9 decimals)`);
  return nanos(BigInt(match[1]!) * 1_000_000_000n + BigInt((match[2] ?? "").padEnd(9, "0")));
}

/** Formats nano-USD as a decimal USD string with all nine digits kept when non-zero ("12.500000000" → "12.5"). */
export function formatUsd(value: Nanos): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = abs / 1_000_000_000n;
  const fraction = (abs % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? "." + fraction : ""}`;
}

/** Formats a pico-USD per-token price back as USD per million tokens. */
export function formatUsdPerMillionTokens(price: PicoPerToken): string {
  const whole = price / 1_000_000n;
  const fraction = (price % 1_000_000n).toString().padStart(6, "0").replace(/0+$/, "");
  return `${whole}${fraction ? "." + fraction : ""}`;
}

/**
 * The largest balance an account may hold: USD 9,000,000 in nano-USD, just under 2^53, so a balance is exact in
 * every store that holds it (Redis scripts compute in IEEE doubles). Top-ups that would pass it are refused.
 */
export const MAX_BALANCE_NANOS: Nanos = nanos(9_000_000n * 1_000_000_000n);
