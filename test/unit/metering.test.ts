import { describe, expect, it } from "vitest";
import { classify } from "../../src/domain/metering.js";
import { recordFromFileLine, UnreadableEntry } from "../../src/dataplane/accesslog/log-record.js";
import { fileLogLine } from "../support/als-client.js";

describe("classify", () => {
  const base = { accountId: "acct_a", decisionId: "d1", usage: { prompt: 10, completion: 5 } };

  it("bills a DownstreamEnd entry from the file log", () => {
    const verdict = classify(recordFromFileLine(fileLogLine(base)));
    expect(verdict).toMatchObject({
      kind: "bill",
      event: {
        decisionId: "d1",
        accountId: "acct_a",
        promptTokens: 10,
        completionTokens: 5,
        estimated: false,
        durationMs: 1250,
        status: 200,
      },
    });
  });

  it("counts a denied request (authz wrote only a verdict) without billing it", () => {
    expect(classify(recordFromFileLine(fileLogLine({ accountId: "acct_a" })))).toEqual({
      kind: "skip",
      reason: "denied",
    });
  });

  it("skips entries that are not final", () => {
    const line = JSON.parse(fileLogLine(base));
    line.log_type = "DownstreamPeriodic";
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toEqual({ kind: "skip", reason: "not_final" });
  });

  it("reads Envoy's null and '-' for an absent namespace", () => {
    const line = JSON.parse(fileLogLine(base));
    line.usage = "-";
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toMatchObject({
      kind: "bill",
      event: { cost: 0n, estimated: true },
    });
    line.authz = null;
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toEqual({ kind: "skip", reason: "no_authz" });
  });

  it("flags estimates and cut-short streams", () => {
    expect(
      classify(
        recordFromFileLine(
          fileLogLine({ ...base, usage: { prompt: 1, completion: 1, source: "estimate", complete: false } }),
        ),
      ),
    ).toMatchObject({ event: { estimated: true } });
    expect(
      classify(
        recordFromFileLine(
          fileLogLine({ ...base, usage: { prompt: 1, completion: 1, source: "provider", complete: false } }),
        ),
      ),
    ).toMatchObject({ event: { estimated: true } });
  });

  it.each([
    [{ cached_tokens: 11 }, "usage.cached_tokens exceeds usage.prompt_tokens"],
    [{ reasoning_tokens: 6 }, "usage.reasoning_tokens exceeds usage.completion_tokens"],
    [{ prompt_tokens: -1 }, "usage.prompt_tokens is not a non-negative integer"],
    [{ prompt_tokens: 1.5 }, "usage.prompt_tokens is not a non-negative integer"],
    [{ source: "guess" }, 'usage.source must be "provider" or "estimate"'],
    [{ complete: "yes" }, "usage.complete must be a boolean"],
  ])("dead-letters usage %j with its reason", (patch, reason) => {
    const line = JSON.parse(fileLogLine(base));
    Object.assign(line.usage, patch);
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toEqual({ kind: "malformed", reason });
  });

  it.each([
    [{ price_input: "-5" }, "authz.price_input is missing or not a non-negative integer"],
    [{ price_output: 1.5 }, "authz.price_output is missing or not a non-negative integer"],
    [{ account_id: "" }, "authz.account_id is missing or not a string"],
    [{ reserved_nanos: undefined }, "authz.reserved_nanos is missing or not a non-negative integer"],
  ])("dead-letters authz %j with its reason", (patch, reason) => {
    const line = JSON.parse(fileLogLine(base));
    Object.assign(line.authz, patch);
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toEqual({ kind: "malformed", reason });
  });

  it("refuses lines that are not JSON objects", () => {
    expect(() => recordFromFileLine("{oops")).toThrow(new UnreadableEntry("line is not JSON"));
    expect(() => recordFromFileLine("[1]")).toThrow(new UnreadableEntry("line is not a JSON object"));
  });
});
