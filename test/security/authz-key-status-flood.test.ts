import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { sqliteTarget } from "../support/services.js";

// GET /v1/key is answered by authz itself and reads the account's balance from SQL (and the key's windows) on every
// call, outside the key's rate limits. A funded key looping on it must not turn authz into an unmetered SQL and Redis
// load generator: reads are bounded per key, the rest refused 429 with when to retry.
describe("authz: GET /v1/key from one key is bounded", () => {
  let plane: TestPlane;
  const now = Date.parse("2026-12-01T12:00:00Z");
  beforeAll(async () => {
    plane = await startTestPlane(sqliteTarget(), { clock: () => now });
  });
  afterAll(async () => plane?.close());

  it("200 answers in one instant stop at a small burst; the rest get 429 rate_limit_exceeded with Retry-After", async () => {
    const { secret } = await plane.account("pro");
    const request = envoyCheckRequest({
      method: "GET",
      path: "/v1/key",
      headers: { authorization: `Bearer ${secret}` },
    });
    const answers = await Promise.all(
      Array.from({ length: 200 }, async () => outcome(await plane.authz.check(request))),
    );
    const served = answers.filter((a) => a.httpStatus === 200);
    const refused = answers.filter((a) => a.httpStatus === 429);
    expect(served.length).toBeGreaterThan(0);
    expect(served.length).toBeLessThanOrEqual(10);
    expect(refused.length).toBe(200 - served.length);
    for (const r of refused) {
      expect(r.error?.code).toBe("rate_limit_exceeded");
      expect(Number(r.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    }
    // Another key is not held up by the first one's flood.
    const other = await plane.account("pro");
    const own = envoyCheckRequest({
      method: "GET",
      path: "/v1/key",
      headers: { authorization: `Bearer ${other.secret}` },
    });
    expect(outcome(await plane.authz.check(own)).httpStatus).toBe(200);
  });
});
