import { create, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  type HTTPAccessLogEntry,
} from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { nanos, picoPerToken, requestCost } from "../../src/domain/money.js";
import { createDecisionVerifier } from "../../src/dataplane/signing/decision-signature.js";
import { authzMetadata, connectAls, TEST_SIGNING_SECRET, usageMetadata } from "../support/als-client.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { describeStores, type StoreTarget } from "../support/services.js";

// Arbitrary HTTPAccessLogEntry messages over real gRPC into a running meter. Every generated entry carries its own
// expectation (bill / dead-letter / skip / anything), so each run checks exactly what the ledger must now hold.
// Deterministic: a fixed seed (override with FUZZ_SEED to explore).
const SEED = Number(process.env.FUZZ_SEED ?? 20_260_101);
const RUNS = 30;

// "sampled": malformed with authz fields no signature vouches for: dead-lettered while the per-minute sample lasts,
// else dropped (counted, not stored), and never billed.
type Expect = "bill" | "dead" | "sampled" | "skip" | "any" | "bill-sqlite-dead-postgres";
const verifier = createDecisionVerifier(TEST_SIGNING_SECRET);
interface Case {
  expect: Expect;
  entry: HTTPAccessLogEntry;
  requestId: string;
  decisionId?: string;
  accountId?: string;
  cost?: bigint;
}

/** Struct values including what proto JSON cannot say (NaN, ±Infinity): the binary wire can carry them. */
const weirdNumber = fc.constantFrom(
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -1,
  -0.5,
  1.5,
  2 ** 60,
  1e300,
  Number.MAX_VALUE,
);
const jsonish: fc.Arbitrary<JsonValue> = fc.letrec<{ v: JsonValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.double(),
    weirdNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("v"), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 12 }), tie("v"), { maxKeys: 4 }),
  ),
})).v;
const badInteger = fc.oneof(
  weirdNumber,
  fc.constantFrom<JsonValue>("1.5", "abc", "-1", "", "0x10", "1e3", true, null, { n: 1 }, [1]),
  fc.string({ maxLength: 8 }).filter((s) => !/^\d{1,30}$/.test(s)),
);
const badCount = fc.oneof(weirdNumber, fc.constantFrom<JsonValue>("12", true, { n: 1 }, [3]));

function entry(options: {
  requestId: string;
  authz?: JsonObject;
  usage?: JsonObject;
  extra?: Record<string, JsonObject>;
  logType?: AccessLogType;
  intermediate?: boolean;
  status?: number;
}): HTTPAccessLogEntry {
  const filterMetadata: Record<string, JsonObject> = { ...options.extra };
  if (options.authz) filterMetadata["envoy.filters.http.ext_authz"] = options.authz;
  if (options.usage) filterMetadata["tollgate.usage"] = options.usage;
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      accessLogType: options.logType ?? AccessLogType.DownstreamEnd,
      intermediateLogEntry: options.intermediate ?? false,
      startTime: timestampFromMs(Date.UTC(2026, 0, 1, 12)),
      duration: { seconds: 2n, nanos: 0 },
      metadata: { filterMetadata },
    },
    request: { requestId: options.requestId, path: "/v1/chat/completions" },
    response: { responseCode: options.status ?? 200 },
  });
}

/** A well-formed billable request: random usage and prices, priced here with the domain's own rounding. */
const usageArb = fc
  .record({
    prompt: fc.nat(2_000_000),
    completion: fc.nat(2_000_000),
    cachedShare: fc.double({ min: 0, max: 1, noNaN: true }),
    reasoningShare: fc.double({ min: 0, max: 1, noNaN: true }),
    source: fc.constantFrom<"provider" | "estimate">("provider", "estimate"),
    complete: fc.boolean(),
  })
  .map((u) => ({
    prompt: u.prompt,
    completion: u.completion,
    cached: Math.floor(u.prompt * u.cachedShare),
    reasoning: Math.floor(u.completion * u.reasoningShare),
    source: u.source,
    complete: u.complete,
  }));
const pricesArb = fc.record({
  input: fc.bigInt(0n, 50_000_000n),
  cachedInput: fc.bigInt(0n, 50_000_000n),
  output: fc.bigInt(0n, 200_000_000n),
});

function casesFor(target: StoreTarget["name"], accountId: string): fc.Arbitrary<Case> {
  const base = fc.record({
    id: fc.uuid({ version: 4 }),
    rid: fc.uuid({ version: 4 }),
    usage: usageArb,
    prices: pricesArb,
    status: fc.integer({ min: 100, max: 599 }),
  });

  const valid = base.map(({ id, rid, usage, prices, status }): Case => {
    const requestId = `fz-${rid}`;
    const authz = authzMetadata({ decisionId: id, accountId, prices });
    const cost = requestCost(
      { promptTokens: usage.prompt, cachedTokens: usage.cached, completionTokens: usage.completion },
      {
        input: picoPerToken(prices.input),
        cachedInput: picoPerToken(prices.cachedInput),
        output: picoPerToken(prices.output),
      },
    );
    return {
      expect: "bill",
      entry: entry({ requestId, authz, usage: usageMetadata(usage), status }),
      requestId,
      decisionId: id,
      accountId,
      cost,
    };
  });

  // Values the classifier accepts but a strict database refuses (a 96-character id, a NUL byte): SQLite stores
  // them, PostgreSQL's varchar(64) / text refuse them, and the meter must dead-letter that one entry only.
  const dbRefused = fc.tuple(valid, fc.constantFrom("long", "nul")).map(([c, how]): Case => {
    const decisionId = how === "long" ? `${c.decisionId}-${"x".repeat(59)}` : `${c.decisionId}\u0000`;
    const authz = { ...authzMetadata({ decisionId, accountId }) };
    const requestId = c.requestId;
    const usage = { prompt: 10, completion: 10 };
    const cost = requestCost(
      { promptTokens: 10, cachedTokens: 0, completionTokens: 10 },
      { input: picoPerToken(2_500_000n), cachedInput: picoPerToken(1_250_000n), output: picoPerToken(10_000_000n) },
    );
    return {
      expect: "bill-sqlite-dead-postgres",
      entry: entry({ requestId, authz, usage: usageMetadata(usage) }),
      requestId,
      decisionId,
      accountId,
      cost,
    };
  });

  const corruptions: Array<fc.Arbitrary<(authz: JsonObject, usage: JsonObject) => void>> = [
    fc.tuple(fc.constantFrom("price_input", "price_cached_input", "price_output", "reserved_nanos"), badInteger).map(
      ([f, v]) =>
        (a: JsonObject) =>
          void (a[f] = v),
    ),
    fc.tuple(fc.constantFrom("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"), badCount).map(
      ([f, v]) =>
        (_a: JsonObject, u: JsonObject) =>
          void (u[f] = v),
    ),
    fc
      .constantFrom<JsonValue>("guess", 1, true, null)
      .map((v) => (_a: JsonObject, u: JsonObject) => void (u.source = v)),
    fc.constantFrom<JsonValue>("yes", 1, null).map((v) => (_a: JsonObject, u: JsonObject) => void (u.complete = v)),
    fc.constant((_a: JsonObject, u: JsonObject) => void (u.cached_tokens = (u.prompt_tokens as number) + 1)),
    fc
      .tuple(
        fc.constantFrom("account_id", "key_id", "model", "provider"),
        fc.constantFrom<JsonValue | undefined>(undefined, "", 7, true, { a: 1 }),
      )
      .map(([f, v]) => (a: JsonObject) => {
        if (v === undefined) delete a[f];
        else a[f] = v;
      }),
    fc
      .constantFrom<JsonValue>(42, true, { a: 1 }, ["x"], Number.NaN)
      .map((v) => (a: JsonObject) => void (a.decision_id = v)),
  ];
  const malformed = fc.tuple(valid, fc.oneof(...corruptions)).map(([c, corrupt]): Case => {
    const authz = authzMetadata({ decisionId: c.decisionId, accountId });
    const usage = usageMetadata({ prompt: 100, completion: 50, cached: 10, reasoning: 5 });
    corrupt(authz, usage);
    return {
      expect: verifier.verify(authz) ? "dead" : "sampled",
      entry: entry({ requestId: c.requestId, authz, usage }),
      requestId: c.requestId,
      decisionId: c.decisionId,
    };
  });

  const skipped = fc
    .tuple(
      valid,
      fc.constantFrom(
        "no-authz",
        "no-id",
        "empty-id",
        "null-id",
        "periodic",
        "upstream",
        "unknown-type",
        "intermediate",
      ),
    )
    .map(([c, how]): Case => {
      const authz = authzMetadata({ decisionId: c.decisionId, accountId });
      const usage = usageMetadata({ prompt: 5, completion: 5 });
      const requestId = c.requestId;
      const make = (o: Partial<Parameters<typeof entry>[0]>) => entry({ requestId, authz, usage, ...o });
      const e =
        how === "no-authz"
          ? entry({ requestId, usage, extra: { "some.other.filter": { decision_id: c.decisionId! } } })
          : how === "no-id"
            ? make({ authz: (delete authz.decision_id, authz) })
            : how === "empty-id"
              ? make({ authz: { ...authz, decision_id: "" } })
              : how === "null-id"
                ? make({ authz: { ...authz, decision_id: null } })
                : how === "periodic"
                  ? make({ logType: AccessLogType.DownstreamPeriodic })
                  : how === "upstream"
                    ? make({ logType: AccessLogType.UpstreamEnd })
                    : how === "unknown-type"
                      ? make({ logType: 99 as AccessLogType })
                      : make({ intermediate: true });
      return { expect: "skip", entry: e, requestId, decisionId: c.decisionId };
    });

  // Anything at all: arbitrary namespaces and values, any log type, missing common properties, odd statuses.
  const junk = fc
    .record({
      rid: fc.uuid({ version: 4 }),
      common: fc.boolean(),
      authz: fc.option(
        fc.dictionary(
          fc.oneof(fc.constantFrom("decision_id", "account_id", "price_input", "model"), fc.string({ maxLength: 10 })),
          jsonish,
          { maxKeys: 6 },
        ),
      ),
      usage: fc.option(
        fc.dictionary(
          fc.oneof(fc.constantFrom("prompt_tokens", "source", "complete"), fc.string({ maxLength: 10 })),
          jsonish,
          { maxKeys: 4 },
        ),
      ),
      extra: fc.dictionary(
        fc.string({ unit: "binary", maxLength: 16 }),
        fc.dictionary(fc.string({ maxLength: 6 }), jsonish, { maxKeys: 3 }),
        { maxKeys: 2 },
      ),
      logType: fc.integer({ min: 0, max: 20 }),
      status: fc.nat(),
      seconds: fc.bigInt(-1n << 40n, 1n << 40n),
    })
    .map((j): Case => {
      const requestId = `fz-${j.rid}`;
      const e = j.common
        ? entry({
            requestId,
            authz: (j.authz ?? undefined) as JsonObject | undefined,
            usage: (j.usage ?? undefined) as JsonObject | undefined,
            extra: j.extra as Record<string, JsonObject>,
            logType: j.logType as AccessLogType,
            status: j.status,
          })
        : create(HTTPAccessLogEntrySchema, { request: { requestId }, response: { responseCode: j.status } });
      if (j.common)
        e.commonProperties!.startTime = { $typeName: "google.protobuf.Timestamp", seconds: j.seconds, nanos: 0 };
      return { expect: "any", entry: e, requestId };
    });

  void target;
  return fc.oneof(
    { arbitrary: valid, weight: 4 },
    { arbitrary: malformed, weight: 3 },
    { arbitrary: skipped, weight: 2 },
    { arbitrary: junk, weight: 3 },
    { arbitrary: dbRefused, weight: 1 },
  );
}

function payloadMentions(payload: string, requestId: string): boolean {
  if (payload.includes(requestId)) return true;
  try {
    const b64 = (JSON.parse(payload) as { protobuf_base64?: string }).protobuf_base64;
    return b64 !== undefined && Buffer.from(b64, "base64").includes(requestId);
  } catch {
    return false;
  }
}

describeStores("fuzz: arbitrary HTTPAccessLogEntry messages over gRPC into the meter", (target) => {
  let t: TestPlane;
  let store: StoreTarget;
  let accountId: string;

  beforeAll(async () => {
    store = target();
    t = await startTestPlane(store, {
      roles: ["authz", "meter"],
      accountCredits: 0n,
      env: { TOLLGATE_METER_LISTEN: "127.0.0.1:0", TOLLGATE_METER_BATCH_WINDOW_MS: "1" },
    });
    ({ accountId } = await t.account("pro"));
    await t.plane.stores.ledger.topUp({ accountId, amount: nanos(1n << 62n), feeBps: 0, now: Date.now() });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("never crashes; malformed entries are dead-lettered with a reason; valid ones are billed exactly once", async () => {
    const address = `127.0.0.1:${t.plane.metering.server!.port}`;
    const als = connectAls(address);
    const meter = t.plane.metering.meter;
    const ledger = t.plane.stores.ledger;
    const knex = t.plane.stores.db.knex;
    const dialect = store.name;
    let runs = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(casesFor(dialect, accountId), { minLength: 1, maxLength: 30 }),
          fc.array(fc.nat(), { maxLength: 6 }),
          fc.integer({ min: 1, max: 4 }),
          async (cases, dupIndexes, messages) => {
            runs++;
            const before = { ...meter.totals };
            const balanceBefore = (await ledger.balance(accountId)).balance;
            const deadBefore = (await ledger.deadLetters()).length;
            // Duplicates: some entries again, later in the stream (Envoy retries, reconnects).
            const sent = [...cases, ...dupIndexes.map((i) => cases[i % cases.length]!)];
            const stream = als.open();
            const per = Math.ceil(sent.length / messages);
            for (let i = 0; i < sent.length; i += per) stream.send(sent.slice(i, i + per).map((c) => c.entry));
            // The same stream still takes a plain valid entry after whatever came before it.
            await stream.end(); // rejects if the server answered with a gRPC error
            await meter.drain();

            const after = meter.totals;
            const d = (k: Exclude<keyof typeof after, "estimated">) => after[k] - before[k];
            expect(d("received")).toBe(sent.length);
            expect(d("billed") + d("alreadyBilled") + d("skipped") + d("deadLettered") + d("dropped")).toBe(
              sent.length,
            );
            expect(d("spooled")).toBe(0);

            const resolve = (c: Case): Exclude<Expect, "bill-sqlite-dead-postgres"> =>
              c.expect === "bill-sqlite-dead-postgres" ? (dialect === "sqlite" ? "bill" : "dead") : c.expect;
            const billedIds = new Map<string, bigint>();
            for (const c of cases) if (resolve(c) === "bill") billedIds.set(c.decisionId!, c.cost!);
            // PostgreSQL cannot even be asked about a NUL-bearing id (and can never have stored one).
            const watched = cases
              .filter(
                (c) =>
                  c.decisionId && resolve(c) !== "any" && !(dialect === "postgres" && c.decisionId.includes("\u0000")),
              )
              .map((c) => c.decisionId!);
            const rows =
              watched.length === 0
                ? []
                : ((await knex("ledger_entries")
                    .whereIn("decision_id", watched)
                    .select("decision_id", "kind", "amount")) as Array<{
                    decision_id: string;
                    kind: string;
                    amount: unknown;
                  }>);
            for (const c of cases) {
              const mine = rows.filter((r) => r.decision_id === c.decisionId);
              const want = resolve(c);
              if (want === "bill") {
                expect(
                  mine.map((r) => r.kind),
                  `${c.decisionId} billed once`,
                ).toEqual(["usage_debit"]);
                expect(BigInt(mine[0]!.amount as string | bigint)).toBe(-c.cost!);
              } else if (want === "dead" || want === "sampled" || want === "skip") {
                expect(mine, `${c.decisionId} (${want}) never billed`).toEqual([]);
              }
            }
            const cost = [...billedIds.values()].reduce((a, b) => a + b, 0n);
            const balance = (await ledger.balance(accountId)).balance;
            expect(balance).toBe(balanceBefore - cost);
            expect(await ledger.entriesTotal(accountId)).toBe(balance);

            const dead = await ledger.deadLetters();
            const fresh = dead.slice(deadBefore);
            expect(fresh.length).toBe(d("deadLettered"));
            for (const f of fresh) expect(f.reason.length).toBeGreaterThan(0);
            for (const c of cases) {
              if (resolve(c) !== "dead") continue;
              expect(
                fresh.some((f) => payloadMentions(f.payload, c.requestId)),
                `dead letter for ${c.requestId}`,
              ).toBe(true);
            }
            // Unsigned malformed entries past the sample are counted, never stored (the sample bound has its own test).
            const unstored = sent.filter(
              (c) => resolve(c) === "sampled" && !fresh.some((f) => payloadMentions(f.payload, c.requestId)),
            );
            expect(unstored.length).toBeLessThanOrEqual(d("dropped"));
          },
        ),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
      expect(runs).toBe(RUNS);

      // Still serving: a fresh stream bills a plain entry.
      const id = crypto.randomUUID();
      const s = als.open();
      s.send([
        entry({
          requestId: `after-${id}`,
          authz: authzMetadata({ decisionId: id, accountId }),
          usage: usageMetadata({ prompt: 1, completion: 1 }),
        }),
      ]);
      await s.end();
      await meter.drain();
      expect((await ledger.entries(accountId)).filter((e) => e.decisionId === id)).toHaveLength(1);
    } finally {
      als.close();
    }
  }, 60_000);
});
