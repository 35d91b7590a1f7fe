import { describe, expect, it } from "vitest";
import { bearer, chat, check, useCheckPlane } from "./setup.js";

const plane = useCheckPlane();

describe("403: model not permitted", () => {
  it("refuses a premium model on the Basic plan, never downgrading it", async () => {
    const { secret } = await plane().account("basic");
    for (const model of ["gpt-5.5", "claude-opus-4.8", "gemini-3.1-pro"]) {
      const res = await check(plane(), { headers: bearer(secret), body: chat(model) });
      expect(res.httpStatus).toBe(403);
      expect(res.grpcCode).toBe(7);
      expect(res.error).toEqual({
        code: "model_not_permitted",
        type: "invalid_request_error",
        param: "model",
        message: `This API key is not permitted to use the model '${model}'.`,
      });
    }
    expect((await check(plane(), { headers: bearer(secret), body: chat("claude-haiku-4.5") })).allowed).toBe(true);
  });

  it("refuses a model outside the key's allow-list even when the plan permits it", async () => {
    const { secret } = await plane().account("scale", { allowedModels: ["claude-haiku-4.5"] });
    const res = await check(plane(), { headers: bearer(secret), body: chat("gpt-5.5") });
    expect(res.httpStatus).toBe(403);
    expect(res.error?.code).toBe("model_not_permitted");
    expect((await check(plane(), { headers: bearer(secret), body: chat("claude-haiku-4.5") })).allowed).toBe(true);
  });

  it("does not let an account's allow-list widen the plan", async () => {
    const { secret } = await plane().account("basic", {
      allowedModels: ["gpt-5.5", "claude-haiku-4.5"],
      setBy: "account",
    });
    expect((await check(plane(), { headers: bearer(secret), body: chat("gpt-5.5") })).httpStatus).toBe(403);
    const models = await check(plane(), { method: "GET", path: "/v1/models", headers: bearer(secret) });
    expect(JSON.parse(models.body).data.map((m: { id: string }) => m.id)).toEqual(["claude-haiku-4.5"]);
  });

  it("refuses GET /v1/models/{id} for a model the key may not use", async () => {
    const { secret } = await plane().account("basic");
    const res = await check(plane(), { method: "GET", path: "/v1/models/gpt-5.5", headers: bearer(secret) });
    expect(res.httpStatus).toBe(403);
  });
});
