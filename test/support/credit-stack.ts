import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, expect } from "vitest";
import { connectRedis, createRedisClient, type RedisConnection } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate, type RedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import type { Quota } from "../../src/domain/admission.js";
import type { BalanceSource, UsageEvent } from "../../src/domain/metering.js";
import { envoyCheckRequest, type outcome } from "./authz-client.js";
import { settled } from "./budgets.js";
import { freePort } from "./ports.js";
import { startRedisServer, stopRedisServer } from "./rate-limits.js";

/** A private redis-server's port and connections to it (set once the suite's beforeAll has run). */
export interface PrivateRedis {
  readonly port: number;
  /** The connection under test (its command timeout is the option's). */
  readonly redis: RedisConnection;
  /** A second connection (2 s timeout) for the test's own commands; undefined with `admin: false`. */
  readonly admin: RedisConnection;
}

/**
 * Starts a private redis-server for the enclosing describe block (beforeAll; killed in afterAll), with `args` added to
 * its command line, and connects to it.
 */
export function usePrivateRedis(
  options: { commandTimeoutMs?: number; admin?: boolean; args?: readonly string[] } = {},
): PrivateRedis {
  const state = {} as { port: number; redis: RedisConnection; admin: RedisConnection };
  let server: ChildProcess | undefined;
  beforeAll(async () => {
    state.port = await freePort();
    server = await startRedisServer(state.port, options.args);
    const url = `redis://127.0.0.1:${state.port}`;
    state.redis = createRedisClient(url, { commandTimeoutMs: options.commandTimeoutMs ?? 2000 });
    expect(await connectRedis(state.redis)).toBe(true);
    if (options.admin !== false) {
      state.admin = createRedisClient(url, { commandTimeoutMs: 2000 });
      expect(await connectRedis(state.admin)).toBe(true);
    }
  }, 20_000);
  afterAll(async () => {
    state.redis?.disconnect();
    state.admin?.disconnect();
    if (server) await stopRedisServer(server);
  });
  return state;
}

const SPEND_BODY = JSON.stringify({
  model: "gpt-5.5",
  max_tokens: 100,
  messages: [{ role: "user", content: "Spend my credit once" }],
});

/** A Check of the same small chat request with `secret`'s key (its worst case is the same every time). */
export const spendCheck = (secret: string) =>
  envoyCheckRequest({
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: SPEND_BODY,
  });

/** The meter's settlement of admitted requests at their full worst case (what the meter commits for them). */
export function worstCaseEvents(
  admitted: Array<ReturnType<typeof outcome>>,
  accountId: string,
  worst: bigint,
): UsageEvent[] {
  return settled(admitted, accountId, worst, Date.now());
}

/**
 * The Redis admission pair under `prefix`: a credit gate loading balances from `source` (reservations live 10
 * minutes; `maxOpenPerAccount` as given, else the gate's default) and the combined hold script over it.
 */
export function redisAdmission(
  redis: RedisConnection,
  prefix: string,
  source: BalanceSource,
  maxOpenPerAccount?: number,
): { credits: RedisCreditGate; quota: Quota } {
  const credits = createRedisCreditGate({
    redis,
    source,
    reservationTtlMs: 600_000,
    prefix: `${prefix}:`,
    ...(maxOpenPerAccount === undefined ? {} : { maxOpenPerAccount }),
  });
  return { credits, quota: createRedisQuota({ redis, prefix, credits }) };
}
