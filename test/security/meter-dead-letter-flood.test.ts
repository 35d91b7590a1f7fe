import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, expect, it } from "vitest";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { UNSIGNED_DEAD_LETTERS_PER_MINUTE } from "../../src/dataplane/accesslog/intake.js";
import { describeStores } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { authzMetadata, connectAls, unsignedAuthzMetadata, usageMetadata } from "../support/als-client.js";

// Anyone who reaches the meter's port without mTLS can send entries. Unsigned entries were already never billed,
// but a malformed one was stored in the dead-letter table, with its payload, before any signature check: a flood
// of them wrote one row each, without bound. Now only a per-minute sample of those is stored.

const FLOOD = 10_000;

function entry(authz: JsonObject, usage: JsonObject): HTTPAccessLogEntry {
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      accessLogType: AccessLogType.DownstreamEnd,
      startTime: timestampFromMs(Date.now() - 2_000),
      duration: { seconds: 1n },
      metadata: { filterMetadata: { "envoy.filters.http.ext_authz": authz, "tollgate.usage": usage } },
    },
    request: { requestId: randomUUID(), path: "/v1/chat/completions" },
    response: { responseCode: 200 },
  });
}

describeStores("meter: a flood of unsigned malformed entries writes a bounded sample of dead letters", (target) => {
  let t: TestPlane;
  let als: ReturnType<typeof connectAls>;

  beforeEach(async () => {
    t = await startTestPlane(target(), {
      roles: ["authz", "meter"],
      env: { TOLLGATE_METER_LISTEN: "127.0.0.1:0", TOLLGATE_METER_BATCH_WINDOW_MS: "2" },
    });
    als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
  });
  afterEach(async () => {
    als.close();
    await t.close();
  });

  it(`stores at most ${UNSIGNED_DEAD_LETTERS_PER_MINUTE} of ${FLOOD} unsigned malformed entries, counts the rest as dropped, and still dead-letters a signed one in full`, async () => {
    const { accountId } = await t.account("pro");
    // Unsigned, and malformed (a price that is not an integer): what a forger without the secret can send.
    const forged = () =>
      entry(
        { ...unsignedAuthzMetadata({ decisionId: randomUUID(), accountId }), price_output: "1.5" },
        usageMetadata({ prompt: 1, completion: 1 }),
      );
    const stream = als.open();
    for (let sent = 0; sent < FLOOD; sent += 500) stream.send(Array.from({ length: 500 }, forged));
    // Signed by authz, malformed in the usage filter's part: a real request the operator must see, payload and all.
    const signedId = randomUUID();
    stream.send([
      entry(authzMetadata({ decisionId: signedId, accountId }), {
        ...usageMetadata({ prompt: 5, completion: 5 }),
        source: "guess",
      }),
    ]);
    await stream.end();
    await t.plane.metering.meter.drain();

    const dead = await t.plane.stores.ledger.deadLetters();
    expect(dead.length).toBe(UNSIGNED_DEAD_LETTERS_PER_MINUTE + 1);
    expect(t.plane.metering.meter.totals).toMatchObject({
      received: FLOOD + 1,
      billed: 0,
      deadLettered: UNSIGNED_DEAD_LETTERS_PER_MINUTE + 1,
      dropped: FLOOD - UNSIGNED_DEAD_LETTERS_PER_MINUTE,
    });
    const signed = dead.filter((d) => d.payload.includes(signedId));
    expect(signed).toHaveLength(1);
    expect(signed[0]!.reason).toBe('usage.source must be "provider" or "estimate"');

    const metrics = (await t.plane.metrics.render()).body;
    expect(metrics).toContain(
      `tollgate_meter_entries_total{outcome="dropped"} ${FLOOD - UNSIGNED_DEAD_LETTERS_PER_MINUTE}`,
    );
    expect(metrics).toContain(
      `tollgate_meter_entries_total{outcome="dead_lettered"} ${UNSIGNED_DEAD_LETTERS_PER_MINUTE + 1}`,
    );
    // Client-reachable: a few throttled warn lines, never one line per entry, never an error.
    const lines = t.logs
      .join("")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(
      lines.filter((l) => l.msg.startsWith("malformed access-log entries without a valid authz signature dropped"))
        .length,
    ).toBeLessThanOrEqual(2);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  });
});
