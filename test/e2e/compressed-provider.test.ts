// Provider responses whose usage cannot be billed as sent: compressed although the data plane asked for
// `accept-encoding: identity` (the mock's gzip=force), or usage the meter refuses. Each request must still be billed
// exactly once, as an estimate that says why (estimate_reason in the access logs), counted where an operator sees it.
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordFromFileLine } from "../../src/dataplane/accesslog/log-record.js";
import { startStack, type Stack } from "./stack.js";

const USER = (text: string) => [{ role: "user" as const, content: text }];

describe("provider responses billed as estimates [edge]", () => {
  let stack: Stack;
  const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });

  /** The account's usage rows once the meter has billed at least one (up to 5 s). */
  const usageRows = async (accountId: string) => {
    let rows = await stack.plane.stores.ledger.usage({ accountId });
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      await sleep(100);
      rows = await stack.plane.stores.ledger.usage({ accountId });
    }
    return rows;
  };

  /** The value of tollgate_meter_usage_estimated_total{reason} on this control plane's /metrics. */
  const estimatedMetric = async (reason: string) => {
    const { body } = await stack.plane.metrics.render();
    const m = new RegExp(`^tollgate_meter_usage_estimated_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(body);
    return m ? Number(m[1]) : undefined;
  };

  beforeAll(async () => {
    stack = await startStack("edge");
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("provider usage the meter cannot bill (cached above prompt): billed once as an estimate, invalid_usage", async () => {
    const { secret, accountId } = await stack.account("pro");
    const before = await estimatedMetric("invalid_usage");
    const { data, response } = await client(secret)
      .chat.completions.create({ model: "gpt-oss-120b", messages: USER("odd usage [[mock:cached=5000]]") })
      .withResponse();
    expect(data.usage?.prompt_tokens_details?.cached_tokens).toBe(5000);
    await stack.flushAccessLogs();
    const rows = await usageRows(accountId); // was none: the entry was dead-lettered until the reservation expired
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ estimated: true, cachedTokens: 0 });
    const line = stack.fileLog().find((l) => l.request_id === response.headers.get("x-request-id"));
    expect(line?.usage).toMatchObject({ source: "estimate", estimate_reason: "invalid_usage" });
    expect(await estimatedMetric("invalid_usage")).toBe(before! + 1);
  });

  for (const stream of [false, true]) {
    it(`${stream ? "stream" : "JSON"}: billed once, as an estimate marked compressed, and counted`, async () => {
      const { secret, accountId } = await stack.account("pro");
      const before = await estimatedMetric("compressed");
      expect(before).toBeDefined();
      stack.mock.clear();
      const text = "zip regardless [[mock:gzip=force]] [[mock:tokens=9]]";
      let requestId: string | null;
      if (stream) {
        const { data, response } = await client(secret)
          .chat.completions.create({ model: "gpt-oss-120b", messages: USER(text), stream: true })
          .withResponse();
        const chunks = [];
        for await (const c of data) chunks.push(c);
        expect(chunks.at(-1)?.usage?.completion_tokens).toBe(9); // the client decompressed it
        requestId = response.headers.get("x-request-id");
      } else {
        const { data, response } = await client(secret)
          .chat.completions.create({ model: "gpt-oss-120b", messages: USER(text) })
          .withResponse();
        expect(data.usage?.completion_tokens).toBe(9);
        expect(response.headers.get("content-encoding")).toBe("gzip");
        requestId = response.headers.get("x-request-id");
      }
      expect(stack.mock.requests[0]!.headers["accept-encoding"]).toBe("identity");
      await stack.flushAccessLogs();
      const rows = await usageRows(accountId);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ estimated: true, status: 200 });
      expect(rows[0]!.completionTokens).toBeGreaterThan(0); // the compressed bytes, counted: never nothing
      const line = stack.fileLog().find((l) => l.request_id === requestId);
      expect(line?.usage).toMatchObject({ source: "estimate", estimate_reason: "compressed" });
      expect(await estimatedMetric("compressed")).toBe(before! + 1);
      // Replaying the file log's line (tollgate reconcile) bills nothing more and counts nothing more.
      const raw = JSON.stringify(line);
      const counts = await stack.plane.metering.meter.submit([
        { source: "file", lift: () => recordFromFileLine(raw), payload: () => raw },
      ]);
      expect(counts).toMatchObject({ billed: 0, alreadyBilled: 1 });
      expect(await stack.plane.stores.ledger.usage({ accountId })).toHaveLength(1);
      expect(await estimatedMetric("compressed")).toBe(before! + 1);
    });
  }
});
