import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, expect, it } from "vitest";
import { toBinary } from "@bufbuild/protobuf";
import { AccessLogType, HTTPAccessLogEntrySchema } from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { nanos, requestCost, picoPerToken } from "../../src/domain/money.js";
import { describeStores } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { alsEntry, connectAls } from "../support/als-client.js";

describeStores("meter: StreamAccessLogs into the ledger", (target) => {
  let t: TestPlane;
  let als: ReturnType<typeof connectAls>;
  let accountId: string;

  beforeEach(async () => {
    t = await startTestPlane(target(), {
      accountCredits: 0n,
      roles: ["authz", "meter"],
      env: { TOLLGATE_METER_LISTEN: "127.0.0.1:0", TOLLGATE_METER_BATCH_WINDOW_MS: "2" },
    });
    als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    ({ accountId } = await t.account("pro"));
    await t.plane.stores.ledger.topUp({ accountId, amount: nanos(5_000_000_000n), feeBps: 2500, now: Date.now() });
  });
  afterEach(async () => {
    als.close();
    await t.close();
  });

  const ledger = () => t.plane.stores.ledger;

  it("debits once when the same entry arrives three times over two streams", async () => {
    const decisionId = randomUUID();
    const entry = alsEntry({
      decisionId,
      accountId,
      usage: { prompt: 1200, completion: 345, cached: 200, reasoning: 45 },
    });
    const first = als.open();
    first.send([entry]);
    first.send([entry]);
    await first.end();
    // Envoy reconnects: a new stream, identifier again in its first message only.
    const second = als.open();
    second.send([entry]);
    await second.end();
    await t.plane.metering.meter.drain();

    const cost = requestCost(
      { promptTokens: 1200, cachedTokens: 200, completionTokens: 345 },
      { input: picoPerToken(2_500_000n), cachedInput: picoPerToken(1_250_000n), output: picoPerToken(10_000_000n) },
    );
    const debits = (await ledger().entries(accountId)).filter((e) => e.kind === "usage_debit");
    expect(debits).toEqual([{ kind: "usage_debit", amount: -cost, decisionId, estimated: false }]);
    expect((await ledger().balance(accountId)).balance).toBe(5_000_000_000n - cost);
    expect(await ledger().entriesTotal(accountId)).toBe(5_000_000_000n - cost);
    const usage = await ledger().usage({ accountId });
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({
      decisionId,
      promptTokens: 1200,
      completionTokens: 345,
      cachedTokens: 200,
      reasoningTokens: 45,
      cost,
      status: 200,
      durationMs: 1250,
      estimated: false,
    });
    expect(t.plane.metering.meter.totals).toMatchObject({ received: 3, billed: 1, alreadyBilled: 2 });
  });

  it("bills batches from many concurrent streams, counts denials, skips non-final entries and dead-letters malformed ones", async () => {
    const streams = Array.from({ length: 8 }, () => als.open());
    const ids: string[] = [];
    streams.forEach((s, i) => {
      const batch = Array.from({ length: 25 }, () => {
        const decisionId = randomUUID();
        ids.push(decisionId);
        return alsEntry({ decisionId, accountId, usage: { prompt: 10 + i, completion: 5 } });
      });
      s.send(batch);
      s.send([alsEntry({ accountId })]); // denied: no decision id
    });
    streams[0]!.send([
      alsEntry({
        decisionId: randomUUID(),
        accountId,
        usage: { prompt: 1, completion: 1 },
        logType: AccessLogType.DownstreamPeriodic,
      }),
    ]);
    const broken = alsEntry({ decisionId: randomUUID(), accountId, usage: { prompt: 1, completion: 1 } });
    (
      broken.commonProperties!.metadata!.filterMetadata["envoy.filters.http.ext_authz"] as Record<string, unknown>
    ).price_output = "1.5";
    streams[1]!.send([broken]);
    await Promise.all(streams.map((s) => s.end()));
    await t.plane.metering.meter.drain();

    expect((await ledger().usage({ accountId })).length).toBe(200);
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 200, skipped: 9, deadLettered: 1 });
    const dead = await ledger().deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]!.reason).toBe("authz.price_output is missing or not a non-negative integer");
    expect(await ledger().entriesTotal(accountId)).toBe((await ledger().balance(accountId)).balance);
  });

  it("dead-letters an entry that is not protobuf alone and bills its neighbours in the same message", async () => {
    const good = [randomUUID(), randomUUID()].map((decisionId) =>
      toBinary(HTTPAccessLogEntrySchema, alsEntry({ decisionId, accountId, usage: { prompt: 7, completion: 3 } })),
    );
    const garbage = new Uint8Array([0x0a, 0x09, 0x01]); // common_properties claiming 9 bytes, with 1
    // StreamAccessLogsMessage{http_logs{log_entry: good, garbage, good}}, written by hand: no encoder writes garbage.
    const lengthPrefix = (n: number) => Buffer.from(n < 0x80 ? [n] : [(n & 0x7f) | 0x80, n >> 7]);
    const field = (tag: number, payload: Uint8Array) =>
      Buffer.concat([Buffer.from([tag]), lengthPrefix(payload.length), payload]);
    const entries = Buffer.concat([field(0x0a, good[0]!), field(0x0a, garbage), field(0x0a, good[1]!)]);
    const stream = als.open();
    stream.send([]);
    stream.sendEncoded(field(0x12, entries));
    await stream.end();
    await t.plane.metering.meter.drain();

    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 2, deadLettered: 1 });
    const dead = await ledger().deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]!.reason).toBe("invalid HTTPAccessLogEntry: truncated field");
    expect(JSON.parse(dead[0]!.payload)).toEqual({ protobuf_base64: Buffer.from(garbage).toString("base64") });
  });

  it("charges an upstream error without usage nothing and a cut-short stream its estimate, flagged", async () => {
    const errorId = randomUUID();
    const cutId = randomUUID();
    const s = als.open();
    s.send([
      alsEntry({ decisionId: errorId, accountId, status: 503, usage: null }),
      alsEntry({
        decisionId: cutId,
        accountId,
        usage: { prompt: 100, completion: 40, source: "estimate", complete: false },
      }),
    ]);
    await s.end();
    await t.plane.metering.meter.drain();
    const byId = new Map((await ledger().usage({ accountId })).map((u) => [u.decisionId, u]));
    expect(byId.get(errorId)).toMatchObject({ cost: 0n, status: 503 });
    expect(byId.get(cutId)).toMatchObject({ estimated: true, cost: (100n * 2_500_000n + 40n * 10_000_000n) / 1000n });
  });
});
