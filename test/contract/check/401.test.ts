import { describe, expect, it } from "vitest";
import { bearer, chat, check, clock, useCheckPlane } from "./setup.js";

const plane = useCheckPlane();

async function expect401(res: Awaited<ReturnType<typeof check>>, code: string, secret?: string) {
  expect(res.allowed).toBe(false);
  expect(res.httpStatus).toBe(401);
  expect(res.grpcCode).toBe(16);
  expect(res.error?.code).toBe(code);
  expect(res.error?.type).toBe("invalid_request_error");
  expect(res.headers["content-type"]).toBe("application/json");
  if (secret) expect(res.body).not.toContain(secret);
}

describe("401: authentication", () => {
  it("refuses a request without Authorization", async () => {
    await expect401(await check(plane(), { body: chat() }), "missing_api_key");
  });

  it("refuses an empty Authorization value", async () => {
    await expect401(await check(plane(), { headers: { authorization: "" }, body: chat() }), "missing_api_key");
  });

  it("refuses other schemes and a Bearer without a token", async () => {
    for (const value of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "tg_" + "a".repeat(40), "Token abc"]) {
      const res = await check(plane(), { headers: { authorization: value }, body: chat() });
      await expect401(res, "missing_api_key");
      expect(res.error?.message).toMatch(/Authorization/);
    }
  });

  it("refuses a token with a space inside it", async () => {
    const { secret } = await plane().account();
    const res = await check(plane(), { headers: { authorization: `Bearer ${secret} extra` }, body: chat() });
    await expect401(res, "missing_api_key", secret);
  });

  it("refuses two Authorization values, in both header encodings", async () => {
    const { secret } = await plane().account();
    for (const rawHeaders of [false, true]) {
      const res = await check(plane(), {
        headers: { authorization: [`Bearer ${secret}`, `Bearer ${secret}`] },
        body: chat(),
        rawHeaders,
      });
      await expect401(res, "missing_api_key", secret);
      expect(res.error?.message).toMatch(/exactly one Authorization/);
    }
  });

  it("refuses a key with the tg_ prefix but the wrong length or alphabet, without a lookup", async () => {
    for (const token of ["tg_short", "tg_" + "a".repeat(41), "tg_" + "a".repeat(39), "tg_" + "a".repeat(39) + "-"]) {
      const res = await check(plane(), { headers: bearer(token), body: chat() });
      await expect401(res, "invalid_api_key", token);
      expect(res.error?.message).toMatch(/not the length or characters/);
    }
  });

  it("refuses a token that is not a Tollgate key", async () => {
    const res = await check(plane(), { headers: bearer("sk-proj-abcdef"), body: chat() });
    await expect401(res, "invalid_api_key", "sk-proj-abcdef");
  });

  it("refuses an unknown well-formed key", async () => {
    const unknown = "tg_" + "Z".repeat(40);
    await expect401(await check(plane(), { headers: bearer(unknown), body: chat() }), "invalid_api_key", unknown);
  });

  it("refuses a 1 MB Authorization header without hashing it", async () => {
    const huge = "Bearer tg_" + "a".repeat(1024 * 1024);
    await expect401(await check(plane(), { headers: { authorization: huge }, body: chat() }), "missing_api_key");
  });

  it("rejects a revoked key on the very next Check", async () => {
    const { secret, keyId } = await plane().account();
    expect((await check(plane(), { headers: bearer(secret), body: chat() })).allowed).toBe(true);
    await plane().plane.keys.revoke(keyId);
    await expect401(await check(plane(), { headers: bearer(secret), body: chat() }), "revoked_api_key", secret);
  });

  it("rejects an expired key on the very next Check", async () => {
    const { secret } = await plane().account("pro", { expiresAt: clock.now + 1000 });
    expect((await check(plane(), { headers: bearer(secret), body: chat() })).allowed).toBe(true);
    clock.now += 1000;
    try {
      await expect401(await check(plane(), { headers: bearer(secret), body: chat() }), "expired_api_key", secret);
    } finally {
      clock.now -= 1000;
    }
  });

  it("rejects a rotated-out secret on the very next Check and accepts the new one", async () => {
    const { secret, keyId } = await plane().account();
    expect((await check(plane(), { headers: bearer(secret), body: chat() })).allowed).toBe(true);
    const rotated = await plane().plane.keys.rotate(keyId);
    await expect401(await check(plane(), { headers: bearer(secret), body: chat() }), "invalid_api_key", secret);
    expect((await check(plane(), { headers: bearer(rotated.secret), body: chat() })).allowed).toBe(true);
  });

  it("authenticates before anything else: a bad body from an anonymous client is still a 401", async () => {
    await expect401(await check(plane(), { body: "not json" }), "missing_api_key");
    await expect401(await check(plane(), { method: "POST", path: "/v1/embeddings", body: "{}" }), "missing_api_key");
  });
});
