import type { UsageEvent } from "../../src/domain/metering.js";
import { nanos } from "../../src/domain/money.js";
import { envoyCheckRequest } from "./authz-client.js";

const BODY = JSON.stringify({
  model: "gpt-5.5",
  max_tokens: 100,
  messages: [{ role: "user", content: "How much may I spend?" }],
});

/** A chat Check for `secret`. */
export function budgetRequest(secret: string) {
  return envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: BODY,
  });
}

/** The meter's settlement of admitted requests, each at `cost`. */
export function settled(
  admitted: Array<{ metadata: Record<string, unknown> }>,
  accountId: string,
  cost: bigint,
  now: number,
): UsageEvent[] {
  return admitted.map((r) => ({
    decisionId: r.metadata.decision_id as string,
    accountId,
    keyId: r.metadata.key_id as string,
    model: "gpt-5.5",
    provider: "openai",
    prices: { input: 0n, cachedInput: 0n, output: 0n } as never,
    reservedNanos: nanos(cost),
    requestId: "r",
    status: 200,
    startMs: now,
    durationMs: 1,
    promptTokens: 1,
    completionTokens: 1,
    cachedTokens: 0,
    reasoningTokens: 0,
    cost: nanos(cost),
    estimated: false,
  }));
}
