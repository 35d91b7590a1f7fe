// Display formatting. Money stays a bigint of nano-USD (or pico-USD for prices) here as everywhere: digits are
// placed by integer arithmetic, never through a float.

const NANOS_PER_USD = 1_000_000_000n;

/** Formats nano-USD as dollars with `digits` decimals (rounded half away from zero), e.g. "$12.50", "-$0.000123". */
export function usd(nanos: bigint, digits = 2): string {
  const negative = nanos < 0n;
  const abs = negative ? -nanos : nanos;
  const scale = 10n ** BigInt(9 - digits);
  const rounded = (abs + scale / 2n) / scale;
  const unit = 10n ** BigInt(digits);
  const whole = (rounded / unit).toLocaleString("en-US");
  const frac = digits > 0 ? `.${(rounded % unit).toString().padStart(digits, "0")}` : "";
  return `${negative ? "-" : ""}$${whole}${frac}`;
}

/** Formats a price in pico-USD per token as dollars per million tokens (exact: 1 pico/token = 1e-6 $/M). */
export function perMillion(pico: bigint): string {
  const whole = pico / 1_000_000n;
  const frac = (pico % 1_000_000n).toString().padStart(6, "0").replace(/0+$/, "");
  return `$${whole}${frac ? `.${frac}` : ""}`;
}

/** Parses dollars per million tokens ("1.25") into pico-USD per token, exactly; undefined when not a price. */
export function parsePerMillion(text: string): bigint | undefined {
  const m = /^\s*\$?(\d{1,9})(?:\.(\d{1,6}))?\s*$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1]!) * 1_000_000n + BigInt((m[2] ?? "").padEnd(6, "0"));
}

/** Parses a dollar amount ("25", "25.50") into nano-USD exactly; undefined when not an amount. */
export function parseUsd(text: string): bigint | undefined {
  const m = /^\s*\$?(\d{1,9})(?:\.(\d{1,9}))?\s*$/.exec(text);
  if (!m) return undefined;
  return BigInt(m[1]!) * NANOS_PER_USD + BigInt((m[2] ?? "").padEnd(9, "0"));
}

/** Dollars as a float, for chart axes only (a plotted point is not money that is added up). */
export function usdForChart(nanos: bigint): number {
  return Number(nanos) / 1e9;
}

/** A count with thousands separators. */
export function count(n: bigint | number): string {
  return n.toLocaleString("en-US");
}

/** A protobuf Timestamp (or its absence) as a short UTC date and time. */
export function when(t: { seconds: bigint } | undefined): string {
  if (!t) return "—";
  return new Date(Number(t.seconds) * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}
