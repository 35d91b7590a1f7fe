import { describe, expect, it } from "vitest";
import { sqliteTarget } from "../../support/services.js";
import { startTestPlane } from "../../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../../support/authz-client.js";
import { bearer, chat } from "./setup.js";

describe("503: the control plane cannot decide", () => {
  it("answers a store fault with a 503 CheckResponse and Retry-After, never a gRPC error", async () => {
    const plane = await startTestPlane(sqliteTarget());
    try {
      const { secret } = await plane.account("pro");
      // The key is not cached yet; with the store gone the cold-path lookup fails.
      await plane.plane.stores.db.knex.destroy();
      const res = outcome(await plane.authz.check(envoyCheckRequest({ headers: bearer(secret), body: chat() })));
      expect(res.httpStatus).toBe(503);
      expect(res.grpcCode).toBe(7);
      expect(res.headers["retry-after"]).toBe("1");
      expect(res.error).toMatchObject({ code: "unavailable", type: "server_error" });
      expect(res.body).not.toContain(secret);
    } finally {
      plane.authz.close();
      await plane.plane.close().catch(() => undefined);
    }
  });

  it("injects configured provider credentials and refuses models of a provider without one", async () => {
    const plane = await startTestPlane(sqliteTarget(), {
      mockProviders: false,
      env: { TOLLGATE_PROVIDER_OPENAI_API_KEY: "sk-upstream-openai" },
    });
    try {
      const { secret } = await plane.account("pro");
      const ok = outcome(
        await plane.authz.check(envoyCheckRequest({ headers: bearer(secret), body: chat("gpt-5.5") })),
      );
      expect(ok.allowed).toBe(true);
      expect(ok.headers.authorization).toBe("Bearer sk-upstream-openai");
      const res = outcome(
        await plane.authz.check(envoyCheckRequest({ headers: bearer(secret), body: chat("gemini-3.1-pro") })),
      );
      expect(res.httpStatus).toBe(503);
      expect(res.headers["retry-after"]).toBe("30");
      expect(res.error?.code).toBe("unavailable");
      expect(res.error?.message).toBe("The provider serving 'gemini-3.1-pro' is not configured on this gateway.");
    } finally {
      await plane.close();
    }
  });
});
