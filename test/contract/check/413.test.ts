// 413 at the exact body-size boundary. Envoy's ext_authz stops buffering once the buffer holds at least
// max_request_bytes and marks the body partial only when what it buffered is longer than what it sends
// (check_request_utils.cc: `length != decoding_buffer->length()`). A body whose chunks fill the buffer to exactly
// the limit, with more still coming, is therefore sent whole-looking: `x-envoy-auth-partial-body: false`. So authz
// treats a body that reaches the limit as cut, whatever the marker says.
import { describe, expect, it } from "vitest";
import { AUTHZ_BODY_LIMIT_BYTES } from "../../../src/contract/index.js";
import { bearer, chat, check, useCheckPlane } from "./setup.js";

const plane = useCheckPlane();

/** A valid chat body padded with trailing whitespace to exactly `size` bytes. */
function bodyOf(size: number): Uint8Array {
  const json = chat("gpt-oss-120b", { max_tokens: 16 });
  return new TextEncoder().encode(json + " ".repeat(size - Buffer.byteLength(json)));
}

describe("413: the body-size boundary (1 MiB, ext_authz max_request_bytes)", () => {
  it("the limit is 1 MiB", () => {
    expect(AUTHZ_BODY_LIMIT_BYTES).toBe(1_048_576);
  });

  it("limit - 1 bytes, marked complete: admitted", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), {
      headers: { ...bearer(secret), "x-envoy-auth-partial-body": "false" },
      body: bodyOf(AUTHZ_BODY_LIMIT_BYTES - 1),
      asBytes: true,
    });
    expect(res.httpStatus).toBe(200);
    expect(res.allowed).toBe(true);
  });

  for (const [what, asBytes] of [
    ["raw_body", true],
    ["body", false],
  ] as const) {
    it(`exactly the limit in ${what}, marked complete (Envoy's buffer filled exactly): 413 request_too_large`, async () => {
      const { secret } = await plane().account("pro");
      const body = bodyOf(AUTHZ_BODY_LIMIT_BYTES);
      const res = await check(plane(), {
        headers: { ...bearer(secret), "x-envoy-auth-partial-body": "false" },
        body: asBytes ? body : new TextDecoder().decode(body),
        asBytes,
      });
      expect(res.httpStatus).toBe(413);
      expect(res.error?.code).toBe("request_too_large");
    });
  }

  it("exactly the limit, marked partial: 413 request_too_large", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), {
      headers: bearer(secret),
      body: bodyOf(AUTHZ_BODY_LIMIT_BYTES),
      asBytes: true,
      partialBody: true,
    });
    expect(res.httpStatus).toBe(413);
    expect(res.error?.code).toBe("request_too_large");
  });
});
