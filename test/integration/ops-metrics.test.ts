import { afterEach, describe, expect, it } from "vitest";
import { AccessLogType } from "../../src/gen/envoy/data/accesslog/v3/accesslog_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startTestPlane, type TestPlane } from "../support/control-plane.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { alsEntry, connectAls } from "../support/als-client.js";

/** Parses Prometheus text exposition into `name{labels}` → value (labels as written, sorted by prom-client). */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`unparseable exposition line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

async function scrape(port: number): Promise<{ contentType: string | null; samples: Map<string, number> }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return { contentType: res.headers.get("content-type"), samples: parseExposition(await res.text()) };
}

const body = (model: string) => JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] });

describe("ops: /metrics exposition", () => {
  let t: TestPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("counts Checks by verdict, access-log entries by outcome, ledger batches and open reservations, on the admin port and metrics.listen", async () => {
    t = await startTestPlane(sqliteTarget(), {
      roles: ["authz", "meter", "admin"],
      env: {
        TOLLGATE_METER_LISTEN: "127.0.0.1:0",
        TOLLGATE_ADMIN_LISTEN: "127.0.0.1:0",
        TOLLGATE_METRICS_LISTEN: "127.0.0.1:0",
        TOLLGATE_METER_BATCH_WINDOW_MS: "1",
      },
    });
    const { accountId, secret } = await t.account("pro");
    const check = async (headers: Record<string, string>, text: string) =>
      outcome(await t!.authz.check(envoyCheckRequest({ headers, body: text })));

    const allowed = [];
    for (let i = 0; i < 3; i++) allowed.push(await check({ authorization: `Bearer ${secret}` }, body("gpt-5.5")));
    expect(allowed.every((r) => r.allowed)).toBe(true);
    expect((await check({}, body("gpt-5.5"))).error?.code).toBe("missing_api_key");
    expect((await check({}, body("gpt-5.5"))).error?.code).toBe("missing_api_key");
    // Change the last character to a different one (a fixed "x" is the same key whenever the secret ends in x).
    const wrong = secret.slice(0, -1) + (secret.endsWith("x") ? "y" : "x");
    expect((await check({ authorization: `Bearer ${wrong}` }, body("gpt-5.5"))).error?.code).toBe("invalid_api_key");
    expect((await check({ authorization: `Bearer ${secret}` }, body("no-such-model"))).error?.code).toBe(
      "model_not_found",
    );

    const before = await scrape(t.plane.admin!.port);
    expect(before.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(before.samples.get('tollgate_authz_checks_total{verdict="allow"}')).toBe(3);
    expect(before.samples.get('tollgate_authz_checks_total{verdict="missing_api_key"}')).toBe(2);
    expect(before.samples.get('tollgate_authz_checks_total{verdict="invalid_api_key"}')).toBe(1);
    expect(before.samples.get('tollgate_authz_checks_total{verdict="model_not_found"}')).toBe(1);
    // Pre-created children are exported at zero, so rate() and alerts work before the first occurrence.
    expect(before.samples.get('tollgate_authz_checks_total{verdict="unavailable"}')).toBe(0);
    expect(before.samples.get("tollgate_authz_check_duration_seconds_count")).toBe(7);
    expect(before.samples.get('tollgate_authz_check_duration_seconds_bucket{le="+Inf"}')).toBe(7);
    expect(before.samples.get("tollgate_credit_reservations_open")).toBe(3);
    expect(before.samples.get("tollgate_meter_entries_received_total")).toBe(0);

    // Two allowed requests come back through the access log (one twice), plus a denial, a non-final and a malformed entry.
    const [first, second] = allowed.map((r) => r.metadata.decision_id as string);
    const end = Date.now();
    const usage = { prompt: 10, completion: 5 };
    const malformed = alsEntry({ decisionId: "dead-0001", accountId, usage });
    (
      malformed.commonProperties!.metadata!.filterMetadata["envoy.filters.http.ext_authz"] as Record<string, unknown>
    ).price_output = "1.5";
    const als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    try {
      const stream = als.open();
      stream.send([
        alsEntry({ decisionId: first, accountId, usage, startMs: end - 1250 }),
        alsEntry({ decisionId: second, accountId, usage, startMs: end - 1250 }),
      ]);
      stream.send([alsEntry({ decisionId: first, accountId, usage, startMs: end - 1250 }), alsEntry({ accountId })]);
      stream.send([
        alsEntry({ decisionId: "periodic-1", accountId, usage, logType: AccessLogType.DownstreamPeriodic }),
        malformed,
      ]);
      await stream.end();
    } finally {
      als.close();
    }
    await t.plane.metering.meter.drain();

    const after = await scrape(t.plane.admin!.port);
    expect(after.samples.get("tollgate_meter_entries_received_total")).toBe(6);
    expect(after.samples.get('tollgate_meter_entries_total{outcome="billed"}')).toBe(2);
    expect(after.samples.get('tollgate_meter_entries_total{outcome="already_billed"}')).toBe(1);
    expect(after.samples.get('tollgate_meter_entries_total{outcome="skipped"}')).toBe(2);
    expect(after.samples.get('tollgate_meter_entries_total{outcome="dead_lettered"}')).toBe(1);
    expect(after.samples.get('tollgate_meter_entries_total{outcome="spooled"}')).toBe(0);
    // Every item went through some group commit; each batch is observed once.
    const batches = after.samples.get("tollgate_meter_ledger_batch_size_count")!;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(after.samples.get("tollgate_meter_ledger_batch_size_sum")).toBe(4); // 3 events (one a duplicate) + 1 dead letter
    // Lag is measured from the entry's end (start + 1.25 s duration = now) to the commit: under a second here.
    expect(after.samples.get("tollgate_meter_ledger_lag_seconds_count")).toBe(3);
    expect(after.samples.get('tollgate_meter_ledger_lag_seconds_bucket{le="1"}')).toBe(3);
    expect(after.samples.get("tollgate_meter_last_commit_timestamp_seconds")).toBeGreaterThan(end / 1000 - 60);
    // The meter settled two of the three reservations.
    expect(after.samples.get("tollgate_credit_reservations_open")).toBe(1);
    expect(after.samples.get('tollgate_sql_errors_total{component="ledger"}')).toBe(0);
    expect(after.samples.get('tollgate_redis_errors_total{component="admission"}')).toBe(0);
    // A dead letter is logged with the decision id it carried.
    expect(t.logs.join("")).toMatch(/"decisionId":"dead-0001".*access-log entry dead-lettered/);

    // metrics.listen serves the same registry for replicas without the admin role.
    const standalone = await scrape(t.plane.metricsServer!.port);
    expect(standalone.samples.get('tollgate_authz_checks_total{verdict="allow"}')).toBe(3);
    expect(standalone.samples.get('tollgate_meter_entries_total{outcome="billed"}')).toBe(2);
  });

  it("counts a failed Check as unavailable and a failed ledger commit as a SQL error; /readyz turns 503 with the store gone", async () => {
    t = await startTestPlane(sqliteTarget(), {
      roles: ["authz", "meter", "admin"],
      env: {
        TOLLGATE_METER_LISTEN: "127.0.0.1:0",
        TOLLGATE_ADMIN_LISTEN: "127.0.0.1:0",
        TOLLGATE_METER_BATCH_WINDOW_MS: "1",
      },
    });
    const { accountId, secret } = await t.account("pro");
    const ready = await fetch(`http://127.0.0.1:${t.plane.admin!.port}/readyz`);
    expect(ready.status).toBe(200);
    await t.plane.stores.db.knex.destroy();
    // A key never seen before needs the store: the Check answers 503 and counts as unavailable.
    const fault = outcome(
      await t.authz.check(envoyCheckRequest({ headers: { authorization: `Bearer ${secret}` }, body: body("gpt-5.5") })),
    );
    expect(fault.httpStatus).toBe(503);
    const als = connectAls(`127.0.0.1:${t.plane.metering.server!.port}`);
    try {
      const stream = als.open();
      stream.send([alsEntry({ decisionId: "lost-1", accountId, usage: { prompt: 1, completion: 1 } })]);
      await stream.end();
    } finally {
      als.close();
    }
    await t.plane.metering.meter.drain();
    const notReady = await fetch(`http://127.0.0.1:${t.plane.admin!.port}/readyz`);
    expect(notReady.status).toBe(503);
    const { samples } = await scrape(t.plane.admin!.port);
    expect(samples.get('tollgate_authz_checks_total{verdict="unavailable"}')).toBe(1);
    expect(samples.get('tollgate_sql_errors_total{component="ledger"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('tollgate_sql_errors_total{component="readiness"}')).toBe(1);
    expect(t.logs.join("")).toMatch(/"decisionIds":\["lost-1"\].*ledger batch not committed/);
  });
});
