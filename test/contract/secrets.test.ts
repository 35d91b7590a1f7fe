import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/domain/api-key.js";
import { sqliteTarget } from "../support/services.js";
import { startTestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";

describe("no response, header or log line carries a key secret or its hash", () => {
  it("holds across allowed, denied and failed Checks with debug logging on", async () => {
    const plane = await startTestPlane(sqliteTarget(), {
      env: { TOLLGATE_PROVIDER_OPENAI_API_KEY: "sk-upstream-secret-openai" },
    });
    const secrets: string[] = [];
    const clientVisible: string[] = [];
    try {
      const live = await plane.account("basic");
      const revoked = await plane.account("pro");
      const expired = await plane.account("pro", { expiresAt: Date.now() - 1 });
      await plane.plane.keys.revoke(revoked.keyId);
      const rotated = await plane.account("pro");
      const replacement = await plane.plane.keys.rotate(rotated.keyId);
      secrets.push(live.secret, revoked.secret, expired.secret, rotated.secret, replacement.secret);
      const body = (model: string) => JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] });
      const requests = [
        { secret: live.secret, body: body("claude-haiku-4.5") },
        { secret: live.secret, body: body("gpt-5.5") },
        { secret: live.secret, body: "not json" },
        { secret: live.secret, body: body("nope") },
        { secret: revoked.secret, body: body("gpt-5.5") },
        { secret: expired.secret, body: body("gpt-5.5") },
        { secret: rotated.secret, body: body("gpt-5.5") },
        { secret: live.secret.slice(0, -1), body: body("gpt-5.5") },
        { secret: live.secret + "x", body: body("gpt-5.5") },
      ];
      for (const r of requests) {
        const res = await plane.authz.check(
          envoyCheckRequest({ headers: { authorization: `Bearer ${r.secret}` }, body: r.body }),
        );
        const flat = outcome(res);
        // What the client or the access log sees: deny bodies and headers, response headers, metadata.
        clientVisible.push(flat.body, JSON.stringify(flat.responseHeaders), JSON.stringify(flat.metadata));
        if (!flat.allowed) clientVisible.push(JSON.stringify(flat.headers));
      }
      // An internal fault logs an error: the store disappears under a cold lookup.
      const cold = await plane.account("pro");
      secrets.push(cold.secret);
      await plane.plane.stores.db.knex.destroy();
      const fault = outcome(
        await plane.authz.check(
          envoyCheckRequest({ headers: { authorization: `Bearer ${cold.secret}` }, body: body("gpt-5.5") }),
        ),
      );
      expect(fault.httpStatus).toBe(503);
      clientVisible.push(fault.body);
    } finally {
      plane.authz.close();
      await plane.plane.close().catch(() => undefined);
    }
    const logs = plane.logs.join("");
    expect(logs).toMatch(/check denied/);
    expect(logs).toMatch(/check failed/);
    const forbidden = [...secrets, ...secrets.map(hashSecret), "sk-upstream-secret-openai"];
    for (const text of [logs, ...clientVisible]) {
      for (const secret of forbidden) expect(text).not.toContain(secret);
      expect(text).not.toMatch(/tg_[A-Za-z0-9]{8,}/);
    }
  });
});
