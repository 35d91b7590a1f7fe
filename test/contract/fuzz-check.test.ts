import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteTarget } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, OVERWRITE, outcome } from "../support/authz-client.js";
import { DENY_STATUS } from "../../src/dataplane/authz/check-response.js";

const STATUSES = new Set([200, ...Object.values(DENY_STATUS).map((s) => s.http)]);

describe("fuzzed CheckRequests", () => {
  let plane: TestPlane;
  let secret = "";
  beforeAll(async () => {
    plane = await startTestPlane(sqliteTarget());
    secret = (await plane.account("scale")).secret;
  });
  afterAll(() => plane?.close());

  const headerName = fc.oneof(
    fc.constantFrom("authorization", "content-type", "x-tollgate-provider", "x-envoy-auth-partial-body", ":path"),
    fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
  );
  const authorization = fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 80 }),
    fc.constantFrom("Bearer", "bearer  ", "Basic abc"),
    fc.string({ maxLength: 50 }).map((s) => `Bearer tg_${s}`),
    fc.constant("VALID"),
  );
  const body = fc.oneof(
    fc.constant(undefined),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.json({ maxDepth: 3 }),
    fc
      .record({
        model: fc.oneof(fc.constantFrom("gpt-5.5", "claude-haiku-4.5", "nope", ""), fc.integer(), fc.constant(null)),
        messages: fc.oneof(
          fc.constant([{ role: "user", content: "hi" }]),
          fc.array(fc.anything(), { maxLength: 3 }),
          fc.string(),
        ),
        stream: fc.oneof(fc.boolean(), fc.string(), fc.constant(undefined)),
        max_tokens: fc.oneof(fc.integer({ min: -5, max: 200_000 }), fc.double(), fc.constant(undefined)),
      })
      .map((o) => JSON.stringify(o)),
  );

  // Random requests are almost never admissible, so a fifth of the runs send a valid chat request with a real key:
  // the property's "allowed" branch must run too.
  const fuzzed = fc.tuple(
    fc.constantFrom("POST", "GET", "PUT", "DELETE", ""),
    fc.oneof(
      fc.constantFrom("/v1/chat/completions", "/v1/models", "/v1/models/gpt-5.5", "/"),
      fc.string({ maxLength: 40 }),
    ),
    authorization,
    fc.dictionary(headerName, fc.string({ maxLength: 40 }), { maxKeys: 8 }),
    body,
  );
  const admissible = fc.tuple(
    fc.constant("POST"),
    fc.constant("/v1/chat/completions"),
    fc.constant("VALID"),
    fc.constant({ "content-type": "application/json" }),
    fc
      .record({
        model: fc.constantFrom("gpt-5.5", "claude-haiku-4.5"),
        messages: fc.constant([{ role: "user", content: "hi" }]),
        stream: fc.boolean(),
        max_tokens: fc.integer({ min: 1, max: 4096 }),
      })
      .map((o) => JSON.stringify(o)),
  );

  it("never throws and always answers a well-formed CheckResponse", async () => {
    const seen = { allowed: 0, denied: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ arbitrary: fuzzed, weight: 4 }, { arbitrary: admissible, weight: 1 }),
        fc.boolean(),
        fc.boolean(),
        async ([method, path, auth, headers, payload], rawHeaders, partialBody) => {
          const all: Record<string, string> = { ...headers };
          if (auth !== undefined) all.authorization = auth === "VALID" ? `Bearer ${secret}` : auth;
          const res = outcome(
            await plane.authz.check(
              envoyCheckRequest({ method, path, headers: all, body: payload, rawHeaders, partialBody }),
            ),
          );
          expect(STATUSES.has(res.httpStatus)).toBe(true);
          expect(res.headerModes.every((mode) => mode === OVERWRITE)).toBe(true);
          if (!res.allowed) {
            const parsed = JSON.parse(res.body);
            if (res.httpStatus !== 200)
              expect(Object.keys(parsed.error).sort()).toEqual(["code", "message", "param", "type"]);
          } else {
            expect(res.metadata.decision_id).toEqual(expect.any(String));
          }
          expect(res.body).not.toContain(secret);
          seen[res.allowed ? "allowed" : "denied"]++;
        },
      ),
      { numRuns: 400 },
    );
    // Both branches of the property ran: the arbitraries reach an admitted request, not only refusals.
    expect(seen.allowed).toBeGreaterThan(0);
    expect(seen.denied).toBeGreaterThan(0);
  });
});
