import { create, fromBinary, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AccessLogCommonSchema,
  AccessLogType,
  HTTPAccessLogEntrySchema,
  ResponseFlagsSchema,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { StreamAccessLogsMessageSchema } from "../../src/gen/envoy/service/accesslog/v3/als_pb.js";
import { recordFromHttpEntry, UnreadableEntry } from "../../src/dataplane/accesslog/log-record.js";
import { splitAlsMessage } from "../../src/dataplane/accesslog/als-service.js";
import { alsEntry } from "../support/als-client.js";
import { recordFromDecodedEntry } from "../support/als-oracle.js";

/** Lifting from the wire must equal lifting protobuf-es's full decode of the same bytes. */
function agrees(bytes: Uint8Array): void {
  expect(recordFromHttpEntry(Buffer.from(bytes))).toEqual(
    recordFromDecodedEntry(fromBinary(HTTPAccessLogEntrySchema, bytes)),
  );
}

const text = fc.string({ unit: "binary", maxLength: 24 });
const json: fc.Arbitrary<JsonValue> = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    text,
    fc.boolean(),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(text, tie("value"), { maxKeys: 3 }),
  ),
})).value;
const namespace = fc.option(
  fc.dictionary(fc.oneof(fc.constantFrom("decision_id", "account_id", "__proto__"), text), json, { maxKeys: 5 }),
  { nil: undefined },
);
const time = fc.option(
  fc.record({
    seconds: fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }),
    nanos: fc.integer({ min: -999_999_999, max: 999_999_999 }),
  }),
  { nil: undefined },
);

const entries = fc.record({
  authz: namespace,
  usage: namespace,
  other: namespace,
  logType: fc.constantFrom(...Object.values(AccessLogType).filter((v): v is number => typeof v === "number"), 99),
  intermediate: fc.boolean(),
  start: time,
  duration: time,
  lastTx: time,
  lastUpstreamTx: time,
  flags: fc.option(
    fc.record({
      downstreamConnectionTermination: fc.boolean(),
      streamIdleTimeout: fc.boolean(),
      upstreamConnectionFailure: fc.boolean(),
      downstreamRemoteReset: fc.boolean(),
      unauthorized: fc.boolean(),
    }),
    { nil: undefined },
  ),
  requestId: fc.option(text, { nil: undefined }),
  status: fc.option(fc.nat({ max: 2 ** 32 - 1 }), { nil: undefined }),
  remote: text,
});

describe("recordFromHttpEntry reads an ALS entry's wire bytes as protobuf-es's full decode would", () => {
  it("for the entries the meter suites send", () => {
    agrees(
      toBinary(
        HTTPAccessLogEntrySchema,
        alsEntry({ decisionId: "d-1", accountId: "acct_1", usage: { prompt: 3, completion: 4, cached: 1 } }),
      ),
    );
    agrees(toBinary(HTTPAccessLogEntrySchema, alsEntry({ accountId: "acct_1", usage: null, status: 402 })));
  });

  it("for response flags sent in several messages: they merge, and a flag's last value wins", () => {
    const flagged = (responseFlags: Parameters<typeof create<typeof ResponseFlagsSchema>>[1]) =>
      toBinary(HTTPAccessLogEntrySchema, create(HTTPAccessLogEntrySchema, { commonProperties: { responseFlags } }));
    // proto3 never writes a false bool: this one is written by hand, as another encoder may.
    const cleared = new BinaryWriter()
      .tag(HTTPAccessLogEntrySchema.field.commonProperties!.number, WireType.LengthDelimited)
      .fork()
      .tag(AccessLogCommonSchema.field.responseFlags!.number, WireType.LengthDelimited)
      .fork()
      .tag(ResponseFlagsSchema.field.noHealthyUpstream!.number, WireType.Varint)
      .bool(false)
      .join()
      .join()
      .finish();
    const bytes = Buffer.concat([
      flagged({ noHealthyUpstream: true, streamIdleTimeout: true }),
      flagged({ upstreamRequestTimeout: true, unauthorizedDetails: { reason: 1 } }),
      cleared,
    ]);
    expect(recordFromHttpEntry(bytes).responseFlags).toEqual(["UT", "UAEX", "SI"]);
    agrees(bytes);
  });

  it("for random entries: metadata Structs of every value kind, other namespaces, times, status, unread fields", () => {
    fc.assert(
      fc.property(entries, (e) => {
        const filterMetadata: Record<string, Record<string, JsonValue>> = {};
        if (e.authz) filterMetadata["envoy.filters.http.ext_authz"] = e.authz;
        if (e.usage) filterMetadata["tollgate.usage"] = e.usage;
        if (e.other) filterMetadata["envoy.lb"] = e.other;
        const entry = create(HTTPAccessLogEntrySchema, {
          commonProperties: {
            downstreamRemoteAddress: { address: { case: "socketAddress", value: { address: e.remote } } },
            startTime: e.start,
            duration: e.duration,
            timeToLastDownstreamTxByte: e.lastTx,
            timeToLastUpstreamTxByte: e.lastUpstreamTx,
            responseFlags:
              e.flags === undefined
                ? undefined
                : {
                    downstreamConnectionTermination: e.flags.downstreamConnectionTermination,
                    streamIdleTimeout: e.flags.streamIdleTimeout,
                    upstreamConnectionFailure: e.flags.upstreamConnectionFailure,
                    downstreamRemoteReset: e.flags.downstreamRemoteReset,
                    unauthorizedDetails: e.flags.unauthorized ? { reason: 1 } : undefined,
                  },
            metadata: { filterMetadata },
            accessLogType: e.logType,
            intermediateLogEntry: e.intermediate,
          },
          request: e.requestId === undefined ? undefined : { requestId: e.requestId, path: "/v1/chat/completions" },
          response: e.status === undefined ? undefined : { responseCode: e.status, responseBodyBytes: 12n },
        });
        agrees(toBinary(HTTPAccessLogEntrySchema, entry));
      }),
      { numRuns: 400 },
    );
  });

  it("refuses an entry that is not one (without common_properties, or not protobuf) as that entry alone", () => {
    expect(() =>
      recordFromHttpEntry(Buffer.from(toBinary(HTTPAccessLogEntrySchema, create(HTTPAccessLogEntrySchema, {})))),
    ).toThrow("entry has no common_properties");
    expect(() => recordFromHttpEntry(Buffer.from([0x0a, 0x09, 0x01]))).toThrow(UnreadableEntry);
    expect(() => recordFromHttpEntry(Buffer.from([0x0a, 0x09, 0x01]))).toThrow(
      "invalid HTTPAccessLogEntry: truncated field",
    );
    const good = toBinary(
      HTTPAccessLogEntrySchema,
      alsEntry({ decisionId: "d-2", accountId: "acct_1", usage: { prompt: 1, completion: 1 } }),
    );
    for (let cut = 1; cut < good.length; cut += 11) {
      const part = Buffer.from(good.subarray(0, cut));
      let decoded: ReturnType<typeof fromBinary<typeof HTTPAccessLogEntrySchema>> | undefined;
      try {
        decoded = fromBinary(HTTPAccessLogEntrySchema, part);
      } catch {
        decoded = undefined;
      }
      if (decoded === undefined) expect(() => recordFromHttpEntry(part)).toThrow(UnreadableEntry);
      else {
        // A cut between fields is a valid shorter entry: both read it alike (or both refuse it for what it lacks).
        let expected: unknown;
        try {
          expected = recordFromDecodedEntry(decoded);
        } catch (error) {
          expected = error;
        }
        if (expected instanceof Error) expect(() => recordFromHttpEntry(part)).toThrow(expected.message);
        else expect(recordFromHttpEntry(part)).toEqual(expected);
      }
    }
  });
});

describe("splitAlsMessage", () => {
  it("hands over each HTTP entry's exact bytes and the identifier's log name; TCP entries are not billed", () => {
    const a = alsEntry({ decisionId: "d-a", accountId: "acct_1", usage: { prompt: 1, completion: 2 } });
    const b = alsEntry({ decisionId: "d-b", accountId: "acct_1", usage: { prompt: 3, completion: 4 } });
    const message = create(StreamAccessLogsMessageSchema, {
      identifier: { node: { id: "envoy-1" }, logName: "tollgate" },
      logEntries: { case: "httpLogs", value: { logEntry: [a, b] } },
    });
    const split = splitAlsMessage(Buffer.from(toBinary(StreamAccessLogsMessageSchema, message)));
    expect(split.logName).toBe("tollgate");
    expect(split.httpEntries.map((bytes) => fromBinary(HTTPAccessLogEntrySchema, bytes))).toEqual([a, b]);
    const later = splitAlsMessage(
      Buffer.from(
        toBinary(
          StreamAccessLogsMessageSchema,
          create(StreamAccessLogsMessageSchema, { logEntries: { case: "httpLogs", value: { logEntry: [a] } } }),
        ),
      ),
    );
    expect(later.logName).toBeUndefined();
    const tcp = create(StreamAccessLogsMessageSchema, { logEntries: { case: "tcpLogs", value: { logEntry: [{}] } } });
    expect(splitAlsMessage(Buffer.from(toBinary(StreamAccessLogsMessageSchema, tcp))).httpEntries).toEqual([]);
  });
});
