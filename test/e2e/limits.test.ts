// Limits a new user can live with, end to end through the data plane with the official `openai` client. The control
// plane runs on a clock the test moves, so a wait the gateway asks for is taken without sleeping through it.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { envoyOnPath, startStack, type DataPlaneKind, type Stack } from "./stack.js";

const USER = (text: string) => [{ role: "user" as const, content: text }];

function describeLimits(kind: DataPlaneKind): void {
  describe(`limits e2e [${kind}]`, () => {
    let stack: Stack;
    let offsetMs = 0;
    const clock = () => Date.now() + offsetMs;
    const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });
    const failure = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (error) {
        return error as InstanceType<typeof OpenAI.APIError>;
      }
      throw new Error("expected the request to fail");
    };

    beforeAll(async () => {
      stack = await startStack(kind, { clock });
    });
    afterAll(async () => {
      await stack?.close();
    });

    it("Basic plan, ordinary calls without max_tokens: 10 a minute succeed on every Basic-tier model, the 11th is 429, and a retry after its Retry-After succeeds", async () => {
      const snapshot = stack.plane.snapshot();
      const basic = snapshot.plans.get("basic")!;
      const models = [...snapshot.models.values()].filter((m) => !m.retired && basic.tiers.includes(m.tier));
      expect(models.length).toBeGreaterThanOrEqual(4);
      for (const model of models) {
        const { secret } = await stack.account("basic");
        const c = client(secret);
        const ordinary = () =>
          c.chat.completions.create({ model: model.id, messages: USER("Write a haiku about the sea.") });
        for (let i = 0; i < 10; i++) {
          const { data } = await ordinary().withResponse();
          expect(data.choices[0]?.message.content, `${model.id} call ${i + 1}`).toBeTruthy();
        }
        const e = await failure(ordinary());
        expect(e, model.id).toBeInstanceOf(OpenAI.RateLimitError);
        expect(e.code).toBe("rate_limit_exceeded");
        expect(e.message).toMatch(/requests per minute/);
        const retryAfter = Number(e.headers?.get("retry-after"));
        expect(retryAfter).toBeGreaterThan(0);
        expect(retryAfter).toBeLessThanOrEqual(60);
        offsetMs += retryAfter * 1000;
        const { data } = await ordinary().withResponse();
        expect(data.choices[0]?.message.content, `${model.id} retry`).toBeTruthy();
      }
    });

    it("tokens in the way belong to requests in flight: 429 says so and asks for a short wait, not the window", async () => {
      // Pro allows 600 requests a minute; tokens are what trips here. Two slow requests hold the key's expected
      // output while a third would exceed tokens per minute: the wait is for them to finish, not for a minute.
      const { secret } = await stack.account("pro", { tokensPerMinute: 3_000 });
      const c = client(secret);
      const slow = [0, 1].map(() =>
        c.chat.completions.create({
          model: "gpt-oss-120b",
          messages: USER("slow [[mock:slow=1500]] [[mock:tokens=5]]"),
          max_tokens: 1_200,
        }),
      );
      await new Promise((r) => setTimeout(r, 400));
      const e = await failure(
        c.chat.completions.create({ model: "gpt-oss-120b", messages: USER("hi"), max_tokens: 1_200 }),
      );
      expect(e).toBeInstanceOf(OpenAI.RateLimitError);
      expect(e.message).toMatch(/in flight/);
      expect(Number(e.headers?.get("retry-after"))).toBeLessThanOrEqual(2);
      await Promise.all(slow);
      await stack.flushAccessLogs();
      await new Promise((r) => setTimeout(r, 500));
      const { data } = await c.chat.completions
        .create({ model: "gpt-oss-120b", messages: USER("hi"), max_tokens: 1_200 })
        .withResponse();
      expect(data.choices[0]?.message.content).toBeTruthy();
    });
  });
}

describeLimits("edge");
if (envoyOnPath()) describeLimits("envoy");
