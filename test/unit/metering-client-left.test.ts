import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { classify, type Classified } from "../../src/domain/metering.js";
import { recordFromFileLine, recordFromHttpEntry } from "../../src/dataplane/accesslog/log-record.js";
import { HTTPAccessLogEntrySchema, ResponseFlagsSchema } from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { alsEntry, fileLogLine } from "../support/als-client.js";

// Review finding: a non-streaming request's response headers come only when the provider has finished, and the usage
// filter writes `tollgate.usage` only on the response path. A client that sends an admitted request (up to 1 MiB of
// prompt) and disconnects before the answer left an entry with its decision id, status 0 (nothing sent downstream)
// and no usage, which the meter billed at 0 and whose reservation and TPM it released at once, while the provider had
// read (and bills us for) the whole prompt. Repeatable at the key's RPM, at no cost. Same for Envoy's stream idle
// timeout (SI) cutting a long reasoning answer. The promise: bill at least the signed prompt estimate whenever the
// provider received the whole request, and never bill one it did not receive.

/** A file-log line of an admitted request that got no usage: status 0, these flags, request sent upstream or not. */
function unanswered(flags: string, sentMs: number | null | "-" | "" | undefined): Classified {
  const line = JSON.parse(fileLogLine({ accountId: "acct_a", decisionId: "d-left" }));
  line.response_code = 0; // no response was sent downstream
  line.response_flags = flags;
  if (sentMs === undefined) delete line.request_tx_duration_ms;
  else line.request_tx_duration_ms = sentMs;
  return classify(recordFromFileLine(JSON.stringify(line)));
}

const PROMPT_ESTIMATE = 100; // test/support/als-client authzMetadata
const INPUT_PICO = 2_500_000n;

describe("a client that leaves before a non-streaming answer", () => {
  it("is billed at least its prompt estimate, not nothing", () => {
    const verdict = unanswered("DC", 3);
    expect(verdict).toMatchObject({ kind: "bill", event: { estimated: true, estimateReason: "client_left" } });
    expect(verdict.kind === "bill" && verdict.event.promptTokens).toBeGreaterThanOrEqual(PROMPT_ESTIMATE);
    expect(verdict.kind === "bill" && verdict.event.cost).toBeGreaterThan(0n);
  });

  it("is billed exactly the prompt estimate at the input price, no output", () => {
    const verdict = unanswered("DC", 3);
    if (verdict.kind !== "bill") throw new Error(`not billed: ${JSON.stringify(verdict)}`);
    expect(verdict.event).toMatchObject({ promptTokens: PROMPT_ESTIMATE, completionTokens: 0, cachedTokens: 0 });
    // 100 tokens × 2,500,000 pico-USD = 250,000,000 pico = 250,000 nano-USD.
    expect(verdict.event.cost).toBe((BigInt(PROMPT_ESTIMATE) * INPUT_PICO) / 1000n);
  });

  it("an HTTP/2 client's reset (DR) is the same", () => {
    expect(unanswered("DR", 3)).toMatchObject({ kind: "bill", event: { estimateReason: "client_left" } });
  });

  it("is billed nothing when the request never went upstream whole (left during authz or the upstream connect)", () => {
    for (const sent of [undefined, null, "-", ""] as const) {
      const verdict = unanswered("DC", sent);
      expect(verdict).toMatchObject({ kind: "bill", event: { estimateReason: "no_usage_metadata", promptTokens: 0 } });
      expect(verdict.kind === "bill" && verdict.event.cost).toBe(0n);
    }
  });
});

describe("other admitted requests the provider received but that got no usage", () => {
  it.each([
    ["SI", "stream_idle"], // Envoy's stream_idle_timeout cut a long answer
    ["UT", "upstream_timeout"],
    ["-", "no_usage_read"], // answered, yet no usage written (a failed usage filter)
  ])("flag %s: billed the prompt estimate, reason %s", (flags, reason) => {
    const verdict = unanswered(flags, 5);
    expect(verdict).toMatchObject({ kind: "bill", event: { estimateReason: reason, promptTokens: PROMPT_ESTIMATE } });
  });

  it.each(["UF", "UH", "UO", "URX", "NR", "NC", "DF", "UF,DC", "DC,URX"])(
    "flag %s (never reached a provider) outweighs a recorded send: billed nothing",
    (flags) => {
      expect(unanswered(flags, 5)).toMatchObject({
        kind: "bill",
        event: { estimateReason: "no_usage_metadata", promptTokens: 0, cost: 0n },
      });
    },
  );

  it("an entry with usage is billed from its usage, whatever its flags (no double count)", () => {
    const line = JSON.parse(
      fileLogLine({ accountId: "acct_a", decisionId: "d-u", usage: { prompt: 7, completion: 3, complete: false } }),
    );
    line.response_flags = "DC";
    line.request_tx_duration_ms = 4;
    const verdict = classify(recordFromFileLine(JSON.stringify(line)));
    expect(verdict).toMatchObject({ kind: "bill", event: { promptTokens: 7, completionTokens: 3 } });
  });
});

describe("the gRPC access log carries the same facts", () => {
  it("DC with time_to_last_upstream_tx_byte set: client_left, billed the prompt estimate", () => {
    const entry = alsEntry({ accountId: "acct_a", decisionId: "d-als", status: 0 });
    entry.commonProperties!.responseFlags = create(ResponseFlagsSchema, { downstreamConnectionTermination: true });
    entry.commonProperties!.timeToLastUpstreamTxByte = {
      $typeName: "google.protobuf.Duration",
      seconds: 0n,
      nanos: 3e6,
    };
    const record = recordFromHttpEntry(toBinary(HTTPAccessLogEntrySchema, entry));
    expect(record).toMatchObject({ responseFlags: ["DC"], upstreamRequestSent: true });
    expect(classify(record)).toMatchObject({
      kind: "bill",
      event: { estimateReason: "client_left", promptTokens: PROMPT_ESTIMATE },
    });
  });

  it("SI without an upstream send: billed nothing", () => {
    const entry = alsEntry({ accountId: "acct_a", decisionId: "d-als2", status: 504 });
    entry.commonProperties!.responseFlags = create(ResponseFlagsSchema, { streamIdleTimeout: true });
    const record = recordFromHttpEntry(toBinary(HTTPAccessLogEntrySchema, entry));
    expect(record).toMatchObject({ responseFlags: ["SI"], upstreamRequestSent: false });
    expect(classify(record)).toMatchObject({ kind: "bill", event: { estimateReason: "no_usage_metadata", cost: 0n } });
  });
});

describe("Envoy's own reply passes through the usage filter, which reads it as a provider error (zero usage)", () => {
  /** What usage.lua writes for any response with status >= 400: a provider error costs nothing. */
  const ZERO = { prompt: 0, completion: 0, source: "provider" as const, complete: true };
  const entry = (flags: string, sentMs: number | null, status: number) => {
    const line = JSON.parse(fileLogLine({ accountId: "acct_a", decisionId: "d-si", usage: ZERO, status }));
    line.response_flags = flags;
    line.request_tx_duration_ms = sentMs;
    return classify(recordFromFileLine(JSON.stringify(line)));
  };

  it("stream idle timeout (SI, 504 local reply) after the request went out: billed the prompt estimate", () => {
    expect(entry("SI", 5, 504)).toMatchObject({
      kind: "bill",
      event: { estimateReason: "stream_idle", promptTokens: PROMPT_ESTIMATE, estimated: true },
    });
  });

  it("upstream reset before headers (UR, UC, UPE, LR; 503 local reply) after the request went out: a provider failure, billed nothing", () => {
    for (const flag of ["UR", "UC", "UPE", "LR"]) {
      expect(entry(flag, 5, 503)).toMatchObject({
        kind: "bill",
        event: { estimateReason: "upstream_reset", promptTokens: 0, cost: 0n },
      });
      expect(unanswered(flag, 5)).toMatchObject({
        kind: "bill",
        event: { estimateReason: "upstream_reset", promptTokens: 0, cost: 0n },
      });
    }
  });

  it("a provider's own error (no flag) still costs nothing; so does a local reply before the request went out", () => {
    expect(entry("-", 5, 500)).toMatchObject({ kind: "bill", event: { cost: 0n, estimated: false } });
    expect(entry("UF", null, 503)).toMatchObject({ kind: "bill", event: { cost: 0n, estimated: false } });
    expect(entry("SI", null, 408)).toMatchObject({ kind: "bill", event: { cost: 0n, estimated: false } });
  });

  it("counted usage is never replaced, whatever the flags", () => {
    const line = JSON.parse(
      fileLogLine({ accountId: "acct_a", decisionId: "d-c", usage: { prompt: 3, completion: 0 }, status: 504 }),
    );
    line.response_flags = "SI";
    line.request_tx_duration_ms = 5;
    expect(classify(recordFromFileLine(JSON.stringify(line)))).toMatchObject({
      kind: "bill",
      event: { promptTokens: 3, estimated: false },
    });
  });
});
