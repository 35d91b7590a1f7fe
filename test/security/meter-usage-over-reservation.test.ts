import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { describeStores } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { authzMetadata, connectAls, usageMetadata } from "../support/als-client.js";

// The usage counts are not signed (the usage filter writes them, trusted because only Envoy reaches the meter), and
// can be anything up to 2^53. Authz's signed reservation is an upper bound for text prompts (not for images), so a
// bill far above it means a broken filter, an image-heavy request, or a forged usage namespace: billed as counted,
// but counted and warned about, so an operator sees it.

// Default test prices: input 2,500 nano-USD per token, output 10,000; reserved 10,000,000 (1,000 output tokens).
const RESERVED = 10_000_000n;

function entry(
  decisionId: string,
  accountId: string,
  usage: { prompt: number; completion: number },
): HTTPAccessLogEntry {
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      accessLogType: AccessLogType.DownstreamEnd,
      startTime: timestampFromMs(Date.now() - 2_000),
      duration: { seconds: 1n },
      metadata: {
        filterMetadata: {
          "envoy.filters.http.ext_authz": authzMetadata({ decisionId, accountId, reservedNanos: RESERVED }),
          "tollgate.usage": usageMetadata(usage),
        },
      },
    },
    request: { requestId: randomUUID(), path: "/v1/chat/completions" },
    response: { responseCode: 200 },
  });
}

describeStores("meter: usage billed above the signed reservation is billed, counted and warned about", (target) => {
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

  it("counts a bill 2^40 completion tokens over its reservation once (not its duplicate, not one within the margin) and warns naming only the decision id", async () => {
    const { accountId } = await t.account("pro");
    const over = randomUUID();
    const within = randomUUID(); // 9,250,000 nano-USD: under the reservation
    const atMargin = randomUUID(); // 12,500,000: exactly 25 % over, inside the margin
    const stream = als.open();
    stream.send([
      entry(over, accountId, { prompt: 10, completion: 2 ** 40 }),
      entry(within, accountId, { prompt: 100, completion: 900 }),
      entry(atMargin, accountId, { prompt: 1000, completion: 1000 }),
    ]);
    stream.send([entry(over, accountId, { prompt: 10, completion: 2 ** 40 })]); // Envoy's retry: already billed
    await stream.end();
    await t.plane.metering.meter.drain();

    // Billed as counted: the meter never refuses billing over this.
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 3, alreadyBilled: 1, overReservation: 1 });
    const debit = (await t.plane.stores.ledger.entries(accountId)).find((e) => e.decisionId === over);
    expect(debit).toBeDefined();
    const metrics = (await t.plane.metrics.render()).body;
    expect(metrics).toMatch(/^tollgate_meter_usage_over_reservation_total 1$/m);
    const warned = t.logs
      .join("")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => String(l.msg).startsWith("billed usage exceeds"));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, decisionId: over, entries: 1 });
    expect(JSON.stringify(warned[0])).not.toContain(accountId);
  });
});
