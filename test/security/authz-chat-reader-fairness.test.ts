import { describe, expect, it } from "vitest";
import type { ServableModels } from "../../src/domain/admission.js";
import type { RequestBody } from "../../src/domain/chat-request.js";
import { createChatReaderPool } from "../../src/dataplane/authz/chat-reader-pool.js";
import { BODY_LIMIT, bodyOfSize } from "./authz-support.js";

const SERVABLE: ServableModels = { has: (model) => model === "gpt-5.5", ids: () => ["gpt-5.5"] };
const OPEN = '{"model":"gpt-5.5","messages":[{"role":"user","content":"';
const body = (size: number, unit: string): RequestBody => ({
  kind: "bytes",
  bytes: new TextEncoder().encode(bodyOfSize(size, OPEN, unit, '"}]}')),
});

describe("authz: one account cannot monopolise the large-body readers", () => {
  it("an account flooding 20 concurrent 1 MiB bodies gets 429s past its cap; another account's 100 KiB body is not queued behind them", async () => {
    // No wait bound here: a loaded machine must not turn the victim's wait into a refusal; the cap is under test.
    const pool = createChatReaderPool({ workers: 2, maxWaitMs: 60_000 });
    try {
      const flood = body(BODY_LIMIT - 1, "the quick brown fox ");
      let flooderAnswered = 0;
      const flooder = Array.from({ length: 20 }, () =>
        Promise.resolve(pool.read(flood, SERVABLE, "acct_flood")).then((read) => {
          if (!("kind" in read)) flooderAnswered++;
          return read;
        }),
      );
      const victim = await pool.read(body(100 * 1024, "lorem ipsum "), SERVABLE, "acct_victim");
      // Read, at most behind the flooder's capped share (FIFO it waited for all 20).
      const readBeforeVictim = flooderAnswered;
      expect(victim).toMatchObject({ model: "gpt-5.5", tokens: { prompt: expect.any(Number) } });
      expect(readBeforeVictim).toBeLessThanOrEqual(4);
      const reads = await Promise.all(flooder);
      const refused = reads.filter((read) => "kind" in read);
      expect(refused.length).toBe(16);
      for (const read of refused) {
        expect(read).toMatchObject({
          kind: "deny",
          code: "rate_limit_exceeded",
          message: "Too many large requests in flight for this account; retry shortly.",
          retryAfterSeconds: 1,
        });
      }
      // The cap counts bodies in flight: once they are answered the account may send more.
      expect(await pool.read(flood, SERVABLE, "acct_flood")).toMatchObject({ model: "gpt-5.5" });
    } finally {
      await pool.close();
    }
  });

  it("a body that waited in the queue past the authz timeout is not read (Envoy already gave up) and is answered 429", async () => {
    const pool = createChatReaderPool({ workers: 1, maxWaitMs: 1 });
    try {
      const large = body(BODY_LIMIT - 1, "the quick brown fox ");
      const reads = await Promise.all(
        ["a", "b", "c", "d"].map((account) => pool.read(large, SERVABLE, `acct_${account}`)),
      );
      expect(reads[0]).toMatchObject({ model: "gpt-5.5" });
      const stale = reads.filter((read) => "kind" in read);
      expect(stale.length).toBeGreaterThan(0);
      for (const read of stale)
        expect(read).toMatchObject({ kind: "deny", code: "rate_limit_exceeded", retryAfterSeconds: 1 });
    } finally {
      await pool.close();
    }
  });
});
