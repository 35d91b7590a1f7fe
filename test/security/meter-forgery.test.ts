import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, expect, it } from "vitest";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { describeStores } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { connectAls, unsignedAuthzMetadata, usageMetadata } from "../support/als-client.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";

// Anyone who reaches the meter's port (or writes to the file log reconcile replays) can send access-log entries.
// Each attack below worked before authz signed its metadata: the meter billed whatever arrived.

const USAGE = { prompt: 1000, completion: 500 };

/** An entry as Envoy's gRPC access logger sends it, with the given ext_authz namespace and usage. */
function entry(authz: JsonObject, usage = USAGE): HTTPAccessLogEntry {
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      accessLogType: AccessLogType.DownstreamEnd,
      startTime: timestampFromMs(Date.now() - 2_000),
      duration: { seconds: 1n },
      metadata: { filterMetadata: { "envoy.filters.http.ext_authz": authz, "tollgate.usage": usageMetadata(usage) } },
    },
    request: { requestId: randomUUID(), path: "/v1/chat/completions" },
    response: { responseCode: 200 },
  });
}

describeStores("meter: forged access-log entries are never billed", (target) => {
  let t: TestPlane;
  let als: ReturnType<typeof connectAls>;
  const START = 5_000_000_000n; // 5 USD

  beforeEach(async () => {
    t = await startTestPlane(target(), {
      accountCredits: START,
      roles: ["authz", "meter"],
      env: { TOLLGATE_METER_LISTEN: "127.0.0.1:0", TOLLGATE_METER_BATCH_WINDOW_MS: "2" },
    });
    als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
  });
  afterEach(async () => {
    als.close();
    await t.close();
  });

  const ledger = () => t.plane.stores.ledger;
  const send = async (...entries: HTTPAccessLogEntry[]) => {
    const stream = als.open();
    for (const e of entries) stream.send([e]);
    await stream.end();
    await t.plane.metering.meter.drain();
  };
  /** A real admission: authz's own metadata for one allowed Check of `secret`'s key. */
  const admit = async (secret: string) => {
    const res = outcome(
      await t.authz.check(
        envoyCheckRequest({
          headers: { authorization: `Bearer ${secret}` },
          body: JSON.stringify({ model: "gpt-5.5", max_tokens: 600, messages: [{ role: "user", content: "hi" }] }),
        }),
      ),
    );
    expect(res.allowed).toBe(true);
    return res.metadata as JsonObject;
  };
  const realCost = (m: JsonObject) =>
    requestCost(
      { promptTokens: USAGE.prompt, cachedTokens: 0, completionTokens: USAGE.completion },
      {
        input: picoPerToken(BigInt(m.price_input as string)),
        cachedInput: picoPerToken(BigInt(m.price_cached_input as string)),
        output: picoPerToken(BigInt(m.price_output as string)),
      },
    );
  const balanceRows = (accountId: string) => t.plane.stores.db.knex("balances").where({ account_id: accountId });

  it("does not charge a victim 2,000,000 USD on a decision authz never admitted", async () => {
    const victim = await t.account("pro");
    const forged = unsignedAuthzMetadata({
      decisionId: randomUUID(),
      accountId: victim.accountId,
      keyId: victim.keyId,
      prices: { input: 2_000_000_000_000_000n, cachedInput: 0n, output: 0n },
    });
    await send(entry(forged, { prompt: 1000, completion: 0 }));
    expect((await ledger().balance(victim.accountId)).balance).toBe(START);
    expect(await ledger().usage({ accountId: victim.accountId })).toEqual([]);
    expect(t.plane.metering.meter.totals).toMatchObject({ received: 1, billed: 0, forged: 1 });
  });

  it("creates no balance for an account that does not exist", async () => {
    const ghost = `acct_${randomUUID()}`;
    await send(entry(unsignedAuthzMetadata({ decisionId: randomUUID(), accountId: ghost })));
    expect(await balanceRows(ghost)).toEqual([]);
    expect(await ledger().entries(ghost)).toEqual([]);
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 0, forged: 1 });
  });

  it("does not bill one account's request to another when account_id is swapped, and bills the real entry to its owner", async () => {
    const owner = await t.account("pro");
    const victim = await t.account("pro");
    const real = await admit(owner.secret);
    await send(entry({ ...real, account_id: victim.accountId }), entry(real));
    expect((await ledger().balance(victim.accountId)).balance).toBe(START);
    const debits = (await ledger().entries(owner.accountId)).filter((e) => e.kind === "usage_debit");
    expect(debits).toEqual([
      { kind: "usage_debit", amount: -realCost(real), decisionId: real.decision_id, estimated: false },
    ]);
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 1, forged: 1 });
  });

  it("ignores a decision pre-billed at price 0, so Envoy's real entry is billed once at its real price", async () => {
    const { accountId, secret } = await t.account("pro");
    const real = await admit(secret);
    const zero = { ...real, price_input: "0", price_cached_input: "0", price_output: "0" };
    // The forger gets there first (the decision id is returned to clients in x-tollgate-decision-id).
    await send(entry(zero));
    await send(entry(real));
    const debits = (await ledger().entries(accountId)).filter((e) => e.kind === "usage_debit");
    expect(debits).toEqual([
      { kind: "usage_debit", amount: -realCost(real), decisionId: real.decision_id, estimated: false },
    ]);
    expect(realCost(real)).toBeGreaterThan(0n);
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 1, alreadyBilled: 0, forged: 1 });
  });

  it("refuses any altered billing field of a real admission and entries signed with another secret", async () => {
    const { accountId, secret } = await t.account("pro");
    const real = await admit(secret);
    const altered: JsonObject[] = [
      { ...real, key_id: "key_other" },
      { ...real, model: "gpt-5.5-mini" },
      { ...real, reserved_nanos: "1" },
      { ...real, stream: true },
      { ...real, sig: "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
      { ...real, sig: 7 },
      Object.fromEntries(Object.entries(real).filter(([k]) => k !== "sig")) as JsonObject,
    ];
    await send(...altered.map((a) => entry(a)));
    expect((await ledger().balance(accountId)).balance).toBe(START);
    expect(t.plane.metering.meter.totals).toMatchObject({ billed: 0, forged: altered.length });
    // Client-controlled input: a throttled warning at most, never an error line.
    const lines = t.logs.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.filter((l) => l.msg.includes("refused unbilled")).length).toBe(1);
    await send(entry(real));
    expect((await ledger().balance(accountId)).balance).toBe(nanos(START - realCost(real)));
  });
});
