import { describe, expect, it } from "vitest";
import { bearer, chat, check, useCheckPlane } from "./setup.js";

const plane = useCheckPlane();

describe("404: unknown model or endpoint", () => {
  it("refuses a model that is not in the catalogue", async () => {
    const { secret } = await plane().account("scale");
    const res = await check(plane(), { headers: bearer(secret), body: chat("gpt-4-nonexistent") });
    expect(res.httpStatus).toBe(404);
    expect(res.error).toEqual({
      code: "model_not_found",
      type: "invalid_request_error",
      param: "model",
      message: "The model 'gpt-4-nonexistent' does not exist.",
    });
  });

  it("refuses a retired model as not found", async () => {
    const { secret } = await plane().account("scale");
    await plane()
      .plane.stores.db.knex("models")
      .where({ id: "gpt-oss-120b" })
      .update({ retired: true, updated_at: Date.now() + 1 });
    await plane().plane.reloadCatalogue();
    try {
      const res = await check(plane(), { headers: bearer(secret), body: chat("gpt-oss-120b") });
      expect(res.httpStatus).toBe(404);
      expect(res.error?.code).toBe("model_not_found");
    } finally {
      await plane().plane.stores.db.knex("models").where({ id: "gpt-oss-120b" }).update({ retired: false });
      await plane().plane.reloadCatalogue();
    }
  });

  it("refuses endpoints the gateway does not serve", async () => {
    const { secret } = await plane().account("scale");
    for (const [method, path] of [
      ["POST", "/v1/embeddings"],
      ["GET", "/v1/chat/completions"],
      ["POST", "/v1/completions"],
      ["DELETE", "/v1/models/gpt-5.5"],
      ["POST", "/"],
    ] as const) {
      const res = await check(plane(), { method, path, headers: bearer(secret), body: chat() });
      expect(res.httpStatus, `${method} ${path}`).toBe(404);
      expect(res.error?.code).toBe("unsupported_endpoint");
      expect(res.error?.message).toContain(`${method} ${path}`);
    }
  });

  it("ignores the query string when matching the endpoint", async () => {
    const { secret } = await plane().account("scale");
    expect(
      (await check(plane(), { path: "/v1/chat/completions?x=1", headers: bearer(secret), body: chat() })).allowed,
    ).toBe(true);
  });
});
