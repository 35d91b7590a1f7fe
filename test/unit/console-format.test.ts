import { describe, expect, it } from "vitest";
import { parsePerMillion, parseUsd, perMillion, usd } from "../../console/src/format.js";

/** The console shows and reads money as bigints of nano-USD and pico-USD per token: no float on the way. */
describe("console money formatting", () => {
  it("formats nano-USD with rounding half away from zero and thousands separators", () => {
    expect(usd(10_000_000_000n)).toBe("$10.00");
    expect(usd(1_234_567_890_123n)).toBe("$1,234.57");
    expect(usd(4_999_999n)).toBe("$0.00");
    expect(usd(5_000_000n)).toBe("$0.01");
    expect(usd(-330_000n, 6)).toBe("-$0.000330");
    expect(usd(1n, 9)).toBe("$0.000000001");
    // 2^63 - 1 nano-USD: exact, where a float would have lost the last digits.
    expect(usd(9_223_372_036_854_775_807n, 9)).toBe("$9,223,372,036.854775807");
  });

  it("shows prices per million tokens exactly and parses them back to pico-USD per token", () => {
    expect(perMillion(2_125_000n)).toBe("$2.125");
    expect(perMillion(1_000_000n)).toBe("$1");
    expect(perMillion(1n)).toBe("$0.000001");
    expect(parsePerMillion("2.125")).toBe(2_125_000n);
    expect(parsePerMillion("$0.000001")).toBe(1n);
    expect(parsePerMillion("0.1")).toBe(100_000n);
    for (const bad of ["", "1.0000001", "-1", "1e3", "abc", "1.2.3"]) expect(parsePerMillion(bad)).toBeUndefined();
  });

  it("parses dollar amounts to nano-USD exactly", () => {
    expect(parseUsd("25")).toBe(25_000_000_000n);
    expect(parseUsd("0.1")).toBe(100_000_000n);
    expect(parseUsd("$5.000000001")).toBe(5_000_000_001n);
    for (const bad of ["", "5.0000000001", "-5", "5,00", "NaN"]) expect(parseUsd(bad)).toBeUndefined();
  });
});
