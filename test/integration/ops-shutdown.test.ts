import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/sql/database.js";
import { openStores } from "../../src/app/stores.js";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { loadConfig, PACKAGE_ROOT } from "../../src/config/config.js";
import { nanos } from "../../src/domain/money.js";
import { connectAuthz, envoyCheckRequest, outcome } from "../support/authz-client.js";
import { alsEntry, connectAls, TEST_SIGNING_SECRET } from "../support/als-client.js";
import { freePort } from "../support/ports.js";

/** What happened to one Check the load generator sent. */
interface CheckCall {
  sentBeforeSigterm: boolean;
  response?: ReturnType<typeof outcome>;
  error?: grpc.ServiceError;
}

describe("ops: SIGTERM under load drains cleanly", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ops-"));
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers every accepted Check, refuses the rest before accepting them, bills every acknowledged ALS entry once and exits 0", async () => {
    const databaseUrl = `sqlite:${join(dir, "tollgate.db")}`;
    // The account, a key with limits far above the load, and credit, written before the server starts.
    const stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: databaseUrl } }));
    const account = await stores.accounts.create({ name: "Drill", planId: "scale" });
    const { secret } = await stores.keys.create({
      accountId: account.id,
      name: "load",
      requestsPerMinute: 10_000_000,
      tokensPerMinute: 2_000_000_000,
    });
    await stores.ledger.topUp({
      accountId: account.id,
      amount: nanos(1_000_000_000_000_000n),
      feeBps: 0,
      now: Date.now(),
    });
    await stores.db.close();

    const [authzPort, meterPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    child = spawn(
      process.execPath,
      [...SERVE_NODE_FLAGS, "--import", "tsx", "src/cli/main.ts", "serve", "--no-data-plane", "--mock-providers"],
      {
        cwd: PACKAGE_ROOT,
        env: {
          ...process.env,
          TOLLGATE_DATABASE_URL: databaseUrl,
          TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET,
          TOLLGATE_AUTHZ_LISTEN: `127.0.0.1:${authzPort}`,
          TOLLGATE_METER_LISTEN: `127.0.0.1:${meterPort}`,
          TOLLGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
          TOLLGATE_LOG_LEVEL: "warn",
          // Health says NOT_SERVING at once; the servers keep accepting for 300 ms (Envoy's health checker would
          // notice in that window), so every call the load generator sent before SIGTERM reaches a live server.
          TOLLGATE_SHUTDOWN_DRAIN_DELAY_MS: "300",
          TOLLGATE_REDIS_URL: "",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout!.on("data", (chunk) => (output += String(chunk)));
    child.stderr!.on("data", (chunk) => (output += String(chunk)));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child!.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const deadline = Date.now() + 30_000;
    while (!/admin \(Connect/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`serve did not start:\n${output}`);
      await sleep(50);
    }

    const authz = connectAuthz(`127.0.0.1:${authzPort}`);
    const als = connectAls(`127.0.0.1:${meterPort}`);
    await als.ready();
    const request = envoyCheckRequest({
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ model: "gpt-5.5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
    });
    let sigtermSent = false;
    const calls: CheckCall[] = [];

    // Checks: 16 workers back to back until the server refuses them (a worker stops at its first error).
    const worker = async () => {
      for (;;) {
        const call: CheckCall = { sentBeforeSigterm: !sigtermSent };
        calls.push(call);
        try {
          call.response = outcome(await authz.check(request));
        } catch (error) {
          call.error = error as grpc.ServiceError;
          return;
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);

    // ALS: 4 streams, a batch of 5 entries every 10 ms each, until 100 ms after SIGTERM; then each is ended.
    let sending = true;
    const streams = Array.from({ length: 4 }, () => ({ stream: als.open(), sent: [] as string[] }));
    const senders = streams.map(async (s) => {
      while (sending) {
        const batch = Array.from({ length: 5 }, () => randomUUID());
        s.stream.send(
          batch.map((decisionId) =>
            alsEntry({ decisionId, accountId: account.id, usage: { prompt: 12, completion: 7 }, startMs: Date.now() }),
          ),
        );
        s.sent.push(...batch);
        await sleep(10);
      }
      return s.stream.end().then(
        () => "ok" as const,
        (error: grpc.ServiceError) => error,
      );
    });

    // Load first: SIGTERM arrives once a few hundred Checks have been answered (the first ones warm caches).
    const warm = Date.now() + 20_000;
    while (calls.filter((c) => c.response).length < 300 && Date.now() < warm) await sleep(20);
    await sleep(100);
    const answeredBefore = calls.filter((c) => c.response).length;
    sigtermSent = true;
    child.kill("SIGTERM");
    await sleep(100);
    sending = false;
    const ended = await Promise.all(senders);
    await Promise.all(workers);
    const { code, signal } = await exited;
    authz.close();
    als.close();

    // Checks: load was real, every call resolved, every call sent before SIGTERM got a CheckResponse (allowed), and
    // the only failures are refusals of new calls: UNAVAILABLE from a refused connection, never a reset mid-call.
    expect(answeredBefore, output).toBeGreaterThanOrEqual(300);
    const before = calls.filter((c) => c.sentBeforeSigterm);
    expect(
      before.every((c) => c.response?.allowed === true && c.response.grpcCode === 0),
      JSON.stringify(before.filter((c) => !c.response?.allowed).slice(0, 3)),
    ).toBe(true);
    const failures = calls.filter((c) => c.error);
    expect(failures).toHaveLength(16);
    for (const f of failures) {
      expect(f.error!.code, f.error!.details).toBe(grpc.status.UNAVAILABLE);
      expect(f.error!.details).not.toMatch(/reset|dropped|RST_STREAM|cancel/i);
    }
    expect(calls.every((c) => c.response !== undefined || c.error !== undefined)).toBe(true);

    // ALS: every stream the meter answered cleanly had all its entries billed, exactly once each.
    expect(ended).toEqual(["ok", "ok", "ok", "ok"]);
    const acknowledged = streams.flatMap((s) => s.sent);
    expect(acknowledged.length).toBeGreaterThan(200);
    const db = await openDatabase(databaseUrl);
    try {
      const rows = (await db
        .knex("ledger_entries")
        .where({ kind: "usage_debit" })
        .select("decision_id")
        .count({ n: "*" })
        .groupBy("decision_id")) as Array<{ decision_id: string; n: number }>;
      const debits = new Map(rows.map((r) => [r.decision_id, Number(r.n)]));
      const missing = acknowledged.filter((id) => debits.get(id) !== 1);
      expect(
        missing,
        `${missing.length} of ${acknowledged.length} acknowledged entries not billed exactly once`,
      ).toEqual([]);
      expect(debits.size).toBe(acknowledged.length);
    } finally {
      await db.close();
    }
    expect({ code, signal }, output).toEqual({ code: 0, signal: null });
    expect(output).toMatch(/SIGTERM: draining/);
    expect(output).toMatch(/tollgate: drained/);
  }, 60_000);
});
