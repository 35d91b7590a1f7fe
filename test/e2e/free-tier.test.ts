// The free tier end to end with the official `openai` client: a new Basic account that never topped up spends its
// plan's monthly grant through the data plane and the meter, then gets 402. The control plane's clock is moved past
// each minute so Basic's 10 requests a minute never get in the way.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "./stack.js";

describe("free tier e2e [edge]", () => {
  let stack: Stack;
  let offsetMs = 0;
  const clock = () => Date.now() + offsetMs;

  beforeAll(async () => {
    stack = await startStack("edge", { clock });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("a new Basic account with no top-up makes real requests on its free grant, then gets 402 when it is spent", async () => {
    const { accountId, secret } = await stack.account("basic", {}, 0n);
    const ledger = stack.plane.stores.ledger;
    expect((await ledger.balance(accountId)).balance).toBe(1_000_000_000n);
    const client = new OpenAI({ apiKey: secret, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });
    // Each call really uses 16,000 output tokens of claude-haiku-4.5 (USD 5 per million): about USD 0.08.
    const call = () =>
      client.chat.completions.create({
        model: "claude-haiku-4.5",
        max_tokens: 16_000,
        messages: [{ role: "user", content: "Tell me a long story [[mock:tokens=16000]]" }],
      });
    let served = 0;
    let refusal: InstanceType<typeof OpenAI.APIError> | undefined;
    for (let i = 0; i < 20 && !refusal; i++) {
      try {
        const reply = await call();
        expect(reply.usage?.completion_tokens).toBe(16_000);
        served++;
        await stack.flushAccessLogs();
        await stack.plane.metering.meter.drain();
        offsetMs += 61_000;
      } catch (error) {
        refusal = error as InstanceType<typeof OpenAI.APIError>;
      }
    }
    expect(served).toBe(12);
    expect(refusal?.status).toBe(402);
    expect(refusal?.code).toBe("insufficient_credits");
    const entries = await ledger.entries(accountId);
    expect(entries.filter((e) => e.kind === "grant").map((e) => e.amount)).toEqual([1_000_000_000n]);
    expect(entries.filter((e) => e.kind === "usage_debit")).toHaveLength(12);
    expect(entries.some((e) => e.kind === "top_up" || e.kind === "platform_fee")).toBe(false);
    const balance = (await ledger.balance(accountId)).balance;
    expect(balance).toBeGreaterThanOrEqual(0n);
    expect(balance).toBeLessThan(80_000_000n);
    expect((await stack.plane.stores.admin.balance(accountId)).free).toBe(balance);
  }, 120_000);
});
