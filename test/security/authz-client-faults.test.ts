import { describe, expect, it } from "vitest";
import { bearer, check, useCheckPlane } from "../contract/check/setup.js";

const plane = useCheckPlane();

/** Log lines at error level or above (pino level ≥ 50): each one pages an operator. */
function errorLines(): unknown[] {
  return plane()
    .logs.map((line) => JSON.parse(line) as { level: number })
    .filter((line) => line.level >= 50);
}

describe("authz over gRPC: client input never yields a 503 or an error log", () => {
  it("a chat body nested 10,000 levels deep is 400 invalid_request", async () => {
    const { secret } = await plane().account("pro");
    const body = `{"model":"gpt-5.5","messages":[{"role":"user","content":"hi","x":${"[".repeat(10_000)}${"]".repeat(10_000)}}]}`;
    const res = await check(plane(), { headers: bearer(secret), body: new TextEncoder().encode(body) });
    expect(res.httpStatus).toBe(400);
    expect(res.error?.code).toBe("invalid_request");
    expect(errorLines()).toEqual([]);
  });

  it("GET /v1/models/%ZZ is 404 model_not_found", async () => {
    const { secret } = await plane().account("pro");
    const res = await check(plane(), { method: "GET", path: "/v1/models/%ZZ", headers: bearer(secret) });
    expect(res.httpStatus).toBe(404);
    expect(res.error?.code).toBe("model_not_found");
    expect(errorLines()).toEqual([]);
  });
});
