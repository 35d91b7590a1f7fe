import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { hashSecret, KEY_LENGTH, mintSecret, secretShape } from "../../src/domain/api-key.js";
import { parseDuration } from "../../src/domain/keys.js";
import {
  formatUsd,
  formatUsdPerMillionTokens,
  parseUsd,
  parseUsdPerMillionTokens,
  picoPerToken,
  tokenCost,
} from "../../src/domain/money.js";
import { estimateChatPromptTokens } from "../../src/domain/token-estimate.js";

describe("money", () => {
  it("parses per-million prices exactly into pico-USD per token", () => {
    expect(parseUsdPerMillionTokens("1.25")).toBe(1_250_000n);
    expect(parseUsdPerMillionTokens("0.000001")).toBe(1n);
    expect(parseUsdPerMillionTokens("75")).toBe(75_000_000n);
    expect(() => parseUsdPerMillionTokens("1.2345678")).toThrow("up to 6 decimals");
    expect(() => parseUsdPerMillionTokens("-1")).toThrow();
  });

  it("rounds a cost up to the next nano-USD and never down", () => {
    expect(tokenCost(1, picoPerToken(1n))).toBe(1n);
    expect(tokenCost(1000, picoPerToken(1n))).toBe(1n);
    expect(tokenCost(1001, picoPerToken(1n))).toBe(2n);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 9n }), fc.bigInt({ min: 0n, max: 10n ** 8n }), (tokens, price) => {
        const cost = tokenCost(tokens, picoPerToken(price));
        return (
          cost * 1000n >= tokens * price && (cost - 1n) * 1000n < tokens * price + (tokens * price === 0n ? 1000n : 0n)
        );
      }),
    );
  });

  it("round-trips USD amounts and prices through text", () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), (n) => parseUsd(formatUsd(n as never)) === n));
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        (p) => parseUsdPerMillionTokens(formatUsdPerMillionTokens(picoPerToken(p))) === p,
      ),
    );
    expect(formatUsd(parseUsd("12.5"))).toBe("12.5");
    expect(() => parseUsd("1e3")).toThrow("is not an amount of USD");
  });
});

describe("API keys", () => {
  it("mints tg_ + 40 base62 characters, hashed and prefixed for display", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const minted = mintSecret();
      expect(minted.secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
      expect(minted.secret).toHaveLength(KEY_LENGTH);
      expect(minted.hash).toBe(hashSecret(minted.secret));
      expect(minted.hash).not.toContain(minted.secret.slice(3));
      expect(minted.displayPrefix).toBe(minted.secret.slice(0, 7));
      seen.add(minted.secret);
    }
    expect(seen.size).toBe(200);
  });

  it("classifies presented tokens by shape before any lookup", () => {
    expect(secretShape(mintSecret().secret)).toBe("well_formed");
    expect(secretShape("tg_abc")).toBe("malformed_key");
    expect(secretShape("tg_" + "a".repeat(39) + "!")).toBe("malformed_key");
    expect(secretShape("sk-abc")).toBe("not_a_key");
  });
});

describe("durations", () => {
  it("parses the forms the CLI documents and refuses others", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("30d")).toBe(2_592_000_000);
    for (const bad of ["", "10", "1x", "-5m", "1.5h", "0s"]) expect(() => parseDuration(bad), bad).toThrow();
  });
});

describe("prompt token estimate", () => {
  it("counts chat messages the way OpenAI does", () => {
    // 3 per message + role + content, + 3 reply priming: OpenAI's cookbook figure for this message is 9.
    expect(estimateChatPromptTokens({ messages: [{ role: "user", content: "Hello world" }] })).toBe(9);
    const withName = estimateChatPromptTokens({ messages: [{ role: "user", name: "bob", content: "Hello world" }] });
    expect(withName).toBe(9 + 1 + 1);
    const parts = estimateChatPromptTokens({
      messages: [{ role: "user", content: [{ type: "text", text: "Hello world" }] }],
    });
    expect(parts).toBe(9);
  });
});

describe("token counting cache", () => {
  it("returns the same counts for long texts on a repeat as on first sight", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/o200k_base");
    const { countTextTokens } = await import("../../src/domain/token-estimate.js");
    fc.assert(
      fc.property(fc.string({ minLength: 0, maxLength: 400 }), (text) => {
        const expected = countTokens(text);
        return countTextTokens(text) === expected && countTextTokens(text) === expected;
      }),
      { numRuns: 300 },
    );
  });

  // The estimate counts a piece longer than 64 characters as its bytes (an upper bound), so it is exact for the short.
  // gpt-tokenizer's count with no special token disallowed reads "<|endoftext|>" as text, as the estimate does.
  it("counts text in any script as gpt-tokenizer does; the estimate is exact for short text, never under", async () => {
    const { countTokens } = await import("gpt-tokenizer/encoding/o200k_base");
    const { countTextTokens, estimateTextTokens, tokenBudget } = await import("../../src/domain/token-estimate.js");
    const agrees = (text: string) => {
      const expected = countTokens(text, { disallowedSpecial: new Set() });
      const estimate = estimateTextTokens(text, tokenBudget());
      return countTextTokens(text) === expected && (text.length <= 64 ? estimate === expected : estimate >= expected);
    };
    const examples = ["", "<|endoftext|>", "a<|im_start|>b<|endofprompt|>", "\uD800", "a\uDC00b", "x".repeat(5000)];
    for (const text of examples) expect(agrees(text), JSON.stringify(text.slice(0, 40))).toBe(true);
    for (const unit of ["grapheme", "binary"] as const)
      fc.assert(fc.property(fc.string({ unit, minLength: 0, maxLength: 200 }), agrees), { numRuns: 300 });
  });
});
