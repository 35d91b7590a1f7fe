import { describe, expect, it } from "vitest";
import { admissionFixture, encodedCheck, timedCheck } from "./authz-support.js";

// Review of b233426: the top-level duplicate check rests on "JSON.parse keeps the last of equal keys, a provider may
// keep the first". The same holds one level down, where the reservation and the billed prompt estimate are read:
// a message whose first "content" is large (or an image part) and whose last is "hi" is estimated (and, when the
// client leaves early or a stream loses its usage, billed) as "hi", while a first-wins provider runs the large one.
describe("authz: a chat body that repeats a member inside a message is refused", () => {
  const big = "lorem ipsum ".repeat(20_000);
  for (const [name, message] of [
    ["content: large text first, short last", `{"role":"user","content":${JSON.stringify(big)},"content":"hi"}`],
    [
      "content: an image part first, text last",
      `{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}],"content":"hi"}`,
    ],
  ] as const) {
    it(`${name}: 400 invalid_request, nothing reserved`, async () => {
      const { secret, deps } = admissionFixture(10n ** 12n);
      const body = `{"model":"gpt-5.5","max_tokens":10,"messages":[${message}]}`;
      const { verdict } = await timedCheck(encodedCheck(secret, body), deps);
      expect(verdict).toMatchObject({ kind: "deny", code: "invalid_request" });
    });
  }
});
