import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryCreditGate } from "../../src/adapters/memory/credit-gate.js";
import { createMemoryRateLimiter } from "../../src/adapters/memory/rate-limiter.js";
import { connectRedis, createRedisClient, type RedisConnection } from "../../src/adapters/redis/client.js";
import { createRedisCreditGate } from "../../src/adapters/redis/credit-gate.js";
import { createRedisQuota } from "../../src/adapters/redis/quota.js";
import { withFailurePolicy } from "../../src/app/rate-limits.js";
import { holdInTurn, type Quota } from "../../src/domain/admission.js";
import { releaseReservations, type CreditReservations } from "../../src/domain/credits.js";
import { nanos } from "../../src/domain/money.js";
import { authorizationService } from "../../src/dataplane/authz/authz-service.js";
import { grpcDefinition, startGrpcServer, type RunningGrpcServer } from "../../src/dataplane/grpc/grpc-server.js";
import { createDecisionSigner } from "../../src/dataplane/signing/decision-signature.js";
import { Authorization, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { createLogger } from "../../src/logging.js";
import { envoyCheckRequest, outcome } from "../support/authz-client.js";
import { admissionFixture } from "./authz-support.js";

const AuthorizationClient = grpc.makeGenericClientConstructor(grpcDefinition(Authorization), "Authorization");
const BODY = JSON.stringify({ model: "gpt-5.5", max_tokens: 100, messages: [{ role: "user", content: "hi" }] });
const TTL_MS = 600_000;
const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL;
const source = {
  balances: async (ids: readonly string[]) =>
    new Map(ids.map((id) => [id, { balance: nanos(1_000_000_000_000n), version: 1 }])),
};

/** A quota that decides only after `ms` (a slow Redis, a busy event loop): the holds are written late, then kept. */
function slow(inner: Quota, ms: number): Quota {
  return {
    async hold(request) {
      await sleep(ms);
      return inner.hold(request);
    },
    release: inner.release?.bind(inner),
  };
}

interface Backend {
  quota: Quota;
  credits: CreditReservations;
  /** Requests the key's window holds now. */
  windowRequests(now: number): Promise<number>;
  close(): Promise<void>;
}

function memoryBackend(): Backend {
  const limiter = createMemoryRateLimiter({ inFlightTtlMs: TTL_MS });
  const credits = createMemoryCreditGate({ source, reservationTtlMs: TTL_MS });
  return {
    quota: holdInTurn(limiter, credits, (a, d) => releaseReservations(credits, a, [d])),
    credits,
    async windowRequests(now) {
      const limits = {
        requestsPerMinute: 1000,
        tokensPerMinute: 1e9,
        requestsPerDay: 0,
        tokensPerDay: 0,
        maxConcurrency: 0,
      };
      const { state } = await limiter.peek({ keyId: "key_1", accountId: "acct_1", now, ...limits });
      return state.requests.limit - state.requests.remaining;
    },
    close: () => credits.close(),
  };
}

function redisBackend(redis: RedisConnection): Backend {
  const prefix = `test_deadline_${randomUUID().slice(0, 8)}`;
  const credits = createRedisCreditGate({ redis, source, reservationTtlMs: TTL_MS, prefix: `${prefix}:` });
  return {
    quota: createRedisQuota({ redis, prefix, credits }),
    credits,
    async windowRequests() {
      return redis.zcard(`${prefix}:{acct_1}:rl:key_1:req`);
    },
    close: () => credits.close(),
  };
}

/**
 * Envoy's ext_authz gives up after its timeout (1 s in envoy.yaml, sent to authz as grpc-timeout), answers 503 and
 * forwards nothing. A Check whose admission finishes after that must not keep its holds: no access-log entry will ever
 * settle them, so the reservation would be charged at expiry and the window, day and in-flight places kept.
 */
describe.each([
  ["in-process", false],
  ["Redis", true],
] as const)("a Check decided after its deadline keeps no holds (%s)", (_name, onRedis) => {
  let server: RunningGrpcServer | undefined;
  let redis: RedisConnection | undefined;
  let backend: Backend | undefined;
  afterEach(async () => {
    await server?.close();
    await backend?.close();
    redis?.disconnect();
  });

  async function serve(delayMs: number) {
    if (onRedis) {
      redis = createRedisClient(redisUrl!, { commandTimeoutMs: 2000 });
      expect(await connectRedis(redis)).toBe(true);
      backend = redisBackend(redis);
    } else backend = memoryBackend();
    const { secret, deps } = admissionFixture(1_000_000_000_000n);
    deps.now = () => Date.now();
    const policed = withFailurePolicy(slow(backend.quota, delayMs), {
      failOpen: false,
      logger: createLogger({ level: "silent" }),
    });
    deps.quota = policed;
    server = await startGrpcServer("127.0.0.1:0", [
      authorizationService({
        admission: deps,
        providers: () => new Map([["openai", { basePath: "/v1", authorization: "Bearer sk-test" }]]),
        logger: createLogger({ level: "silent" }),
        signer: createDecisionSigner("s".repeat(32)),
      }),
    ]);
    const client = new AuthorizationClient(
      `127.0.0.1:${server.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & {
      check(
        req: unknown,
        options: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: CheckResponse) => void,
      ): void;
    };
    const request = envoyCheckRequest({
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: BODY,
    });
    const check = (timeoutMs: number) =>
      new Promise<CheckResponse>((resolve, reject) =>
        client.check(request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))),
      );
    return { check, backend, close: () => client.close() };
  }

  it.skipIf(onRedis && !redisUrl)(
    "Envoy gave up (deadline passed) before admission held: all holds released",
    async () => {
      const t = await serve(400);
      try {
        await expect(t.check(150)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        // The hold completes at ~400 ms, after the deadline; its release follows.
        await sleep(800);
        expect(await t.backend.credits.expired(Date.now() + TTL_MS + 1)).toEqual([]);
        expect(await t.backend.windowRequests(Date.now())).toBe(0);
      } finally {
        t.close();
      }
    },
  );

  it.skipIf(onRedis && !redisUrl)("answered within its deadline: the holds stay for the meter to settle", async () => {
    const t = await serve(50);
    try {
      expect(outcome(await t.check(2000)).allowed).toBe(true);
      await sleep(200);
      expect(await t.backend.credits.expired(Date.now() + TTL_MS + 1)).toHaveLength(1);
      expect(await t.backend.windowRequests(Date.now())).toBe(1);
    } finally {
      t.close();
    }
  });
});
