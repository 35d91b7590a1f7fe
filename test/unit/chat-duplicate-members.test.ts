import { describe, expect, it } from "vitest";
import { parseChatRequest } from "../../src/domain/chat-request.js";

/**
 * A repeated member anywhere in a chat body is refused and named. The check counts members in the text and keys in
 * the parsed value (equal unless a name repeats), and only a mismatch runs the scan that names the member; these
 * cases hold it to a reference that remembers every name, on hand-picked shapes and on generated ones.
 */
const parse = (body: string) => parseChatRequest({ kind: "text", text: body });
const chat = (extra: string) => `{"model":"m","messages":[{"role":"user","content":"hi"}]${extra}}`;

describe("chat bodies with repeated members", () => {
  for (const [what, body, name] of [
    ["top level", chat(`,"max_tokens":1,"max_tokens":2`), "max_tokens"],
    ["escaped spelling of the same name", chat(`,"n":1,"\\u006e":2`), "n"],
    ["__proto__ twice", chat(`,"__proto__":1,"__proto__":{"a":1}`), "__proto__"],
    ["an integer-like name twice", chat(`,"x":{"1":1,"2":2,"1":3}`), "1"],
    [
      "in a message, first value an object",
      `{"model":"m","messages":[{"content":{"a":{"b":1}},"content":"x"}]}`,
      "content",
    ],
    ["in a deep array", chat(`,"t":[[[{"a":1},{"b":1,"b":2}]]]`), "b"],
    ["empty name twice", chat(`,"x":{"":1,"":2}`), ""],
  ] as const) {
    it(`${what}: refused, naming '${name}'`, () => {
      expect(parse(body)).toMatchObject({ kind: "deny", code: "invalid_request", param: name });
    });
  }

  for (const [what, body] of [
    ["same name in sibling objects", chat(`,"x":[{"a":1},{"a":2}],"y":{"a":{"a":{"a":1}}}`)],
    ["names that differ only by case or escapes that differ", chat(`,"x":{"a":1,"A":2,"\\u0062":3}`)],
    ["an integer-like name and its non-canonical spelling", chat(`,"x":{"1":1,"01":2}`)],
    ["colons, braces and quotes inside strings", chat(`,"x":{"a":"{\\"a\\":1,\\"a\\":2}","b":"[,:]"}`)],
  ] as const) {
    it(`${what}: accepted`, () => {
      expect(parse(body)).not.toHaveProperty("kind");
    });
  }

  it("a property added to Object.prototype does not make up for a repeated member", () => {
    Object.defineProperty(Object.prototype, "polluted", {
      value: 1,
      enumerable: true,
      configurable: true,
      writable: true,
    });
    try {
      // Three objects (the body, its message, x) each gain the inherited member; x loses three repeats of "a".
      expect(parse(chat(`,"x":{"a":1,"a":2,"a":3,"a":4}`))).toMatchObject({ kind: "deny", param: "a" });
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted;
    }
  });

  it("generated bodies: refused exactly when some object repeats a name", () => {
    let seed = 7;
    // mulberry32: a fixed sequence, so a failure names the same text every run.
    const random = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
    };
    const NAMES = ["a", "b", "c", "\\u0061", "1", "__proto__", "x y"];
    const decoded = (n: string) => JSON.parse(`"${n}"`) as string;
    /** Text of a random value, and whether an object in it repeats a name. */
    function value(depth: number): [string, boolean] {
      const kind = depth > 4 ? 0 : random(4);
      if (kind === 0) return [random(2) ? `"s,{:}\\""` : String(random(100)), false];
      if (kind === 1) {
        const items = Array.from({ length: random(4) }, () => value(depth + 1));
        return [`[${items.map((i) => i[0]).join(",")}]`, items.some((i) => i[1])];
      }
      const members = Array.from(
        { length: random(5) },
        () => [NAMES[random(NAMES.length)]!, value(depth + 1)] as const,
      );
      const seen = new Set(members.map(([n]) => decoded(n)));
      const repeats = seen.size < members.length || members.some(([, v]) => v[1]);
      return [`{${members.map(([n, v]) => `"${n}":${v[0]}`).join(",")}}`, repeats];
    }
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const [text, repeats] = value(1);
      const verdict = parse(chat(`,"x":${text}`));
      const denied = "kind" in verdict && verdict.message.includes("repeats the member");
      expect({ text, denied }).toEqual({ text, denied: repeats });
      if (denied) refused++;
    }
    expect(refused).toBeGreaterThan(300);
  });
});
