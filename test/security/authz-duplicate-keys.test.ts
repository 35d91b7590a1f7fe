import { describe, expect, it } from "vitest";
import { admissionFixture, encodedCheck, timedCheck } from "./authz-support.js";

// JSON.parse keeps the last of two equal keys; a provider whose parser keeps the first would then be asked for more
// than authz reserved (`"max_tokens":100000,"max_tokens":1` reserves one output token). No OpenAI request has a
// repeated top-level member, so one is refused before anything is reserved.
describe("authz: a chat body with a repeated top-level member is refused", () => {
  const prefix = '{"model":"gpt-5.5","messages":[{"role":"user","content":"Say hello"}]';
  for (const [name, body, param] of [
    ["max_tokens", `${prefix},"max_tokens":100000,"max_tokens":1}`, "max_tokens"],
    ["n", `{"n":16,${prefix.slice(1)},"max_tokens":10,"n":1}`, "n"],
    ["model", `{"model":"gpt-5.5-pro",${prefix.slice(1)},"max_tokens":10}`, "model"],
    ["an escaped spelling of max_tokens", `${prefix},"max_tokens":100000,"max\\u005ftokens":1}`, "max_tokens"],
    ["an unmodelled member", `${prefix},"max_tokens":10,"user":"a","user":"b"}`, "user"],
  ] as const) {
    it(`${name}: 400 invalid_request naming the member`, async () => {
      const { secret, deps } = admissionFixture(10n ** 12n);
      const { verdict } = await timedCheck(encodedCheck(secret, body), deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request", param });
      expect(verdict.kind === "deny" && verdict.message).toContain(`'${param}'`);
    });
  }

  it("equal keys in different objects, and key-like text inside strings, are fine", async () => {
    const { secret, deps } = admissionFixture(10n ** 12n);
    const body = JSON.stringify({
      model: "gpt-5.5",
      max_tokens: 10,
      messages: [
        { role: "system", content: '{"max_tokens":1,"max_tokens":2}' },
        { role: "user", content: "hi", name: "a" },
      ],
      metadata: { model: "x", max_tokens: "y" },
    });
    const { verdict } = await timedCheck(encodedCheck(secret, body), deps);
    expect(verdict.kind).toBe("allow");
  });
});
