import type { Redis } from "ioredis";
import { createMemoryCreditGate } from "../adapters/memory/credit-gate.js";
import { createRedisCreditGate, type RedisCreditGate } from "../adapters/redis/credit-gate.js";
import type { LedgerStore } from "../adapters/sql/ledger-store.js";
import type { Config } from "../config/config.js";
import type { RateLimiter } from "../domain/admission.js";
import type { CreditReservations } from "../domain/credits.js";
import { accessLogService } from "../dataplane/accesslog/als-service.js";
import { createMeter, type Meter, type MeterSpool, type SpooledBatch } from "../dataplane/accesslog/meter.js";
import { createSqliteSpool, spoolFileFor } from "../adapters/spool/sqlite-spool.js";
import { isStoreUnavailable } from "../adapters/sql/unavailable.js";
import { startGrpcServer, type RunningGrpcServer } from "../dataplane/grpc/grpc-server.js";
import type { Logger } from "../logging.js";

const DAY_MS = 86_400_000;

/** Credits and metering wired for one process: the gate admission reserves through, and the meter role if asked. */
export interface Metering {
  credits: CreditReservations;
  /** The same gate when it is the Redis one, for the combined admission script. */
  redisCredits?: RedisCreditGate;
  meter: Meter;
  /** The StreamAccessLogs server when this process runs the meter role. */
  server?: RunningGrpcServer;
  close(): Promise<void>;
}

/**
 * Builds the credit gate (Redis when redis.url is set, so every authz replica shares reservations; in-process
 * otherwise) and the meter; starts the ALS server for the meter role. The expiry sweep runs wherever reservations
 * are taken (authz) or settled (meter): sweeps are idempotent, so several replicas sweeping is harmless.
 */
export async function startMetering(
  config: Config,
  options: {
    ledger: LedgerStore;
    roles: readonly string[];
    logger: Logger;
    clock: () => number;
    pollMs: number;
    /** The hot-path Redis connection (the limiter's); the gate is Redis-backed when there is one. */
    redis?: Redis;
    /** Settled by the meter with each billed request's actual tokens. */
    limiter?: RateLimiter;
    /** The PostgreSQL schema the stores use (tests isolate runs by schema); part of the spool file's identity. */
    schema?: string;
  },
): Promise<Metering> {
  const { ledger, logger, clock } = options;
  let credits: CreditReservations;
  let redisCredits: RedisCreditGate | undefined;
  if (options.redis) {
    // The limiter's connection: no queueing while Redis is down (a Check must be answered now, and admission turns
    // the error into a 503), auto-pipelining so concurrent Checks share round trips, and one connection for the
    // combined admission script, whose sweep-index write must precede its reservation on the same connection.
    credits = redisCredits = createRedisCreditGate({ redis: options.redis, source: ledger, reservationTtlMs: config.meter.reservation_ttl_ms, prefix: `${config.redis.prefix}:` });
  } else {
    credits = createMemoryCreditGate({ source: ledger, reservationTtlMs: config.meter.reservation_ttl_ms });
  }
  const meterRole = options.roles.includes("meter");
  // Only the meter role spools: it is the one receiving entries nobody else holds. Other roles' meters only sweep
  // expired reservations, which stay held in the gate and are swept again when the ledger is back.
  const spool: MeterSpool | undefined = meterRole
    ? createSqliteSpool<SpooledBatch>(spoolFileFor(config.meter.spool_dir, config.database.url, options.schema))
    : undefined;
  const meter = createMeter({
    ledger,
    credits,
    limiter: options.limiter,
    logger,
    clock,
    spool,
    isUnavailable: isStoreUnavailable,
    maxBatch: config.meter.batch_max,
    windowMs: config.meter.batch_window_ms,
    // One transaction at a time: group commits lock their accounts, so parallel ones mostly wait on each other,
    // and while one commits the next batch grows (measured with bench/meter: 1 beats 2 and 4 on PostgreSQL).
    concurrency: 1,
  });

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, what: string, fn: () => Promise<unknown>) => {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      fn()
        .catch((error: unknown) => logger.warn({ err: error }, `${what} failed; retrying next round`))
        .finally(() => (running = false));
    }, ms);
    timer.unref();
    timers.push(timer);
  };
  if (meterRole || options.roles.includes("authz")) {
    every(options.pollMs, "credit balance refresh", () => credits.refresh());
    every(Math.min(config.meter.reservation_ttl_ms / 4, 30_000), "reservation expiry sweep", async () => {
      const charged = await meter.sweepExpired();
      if (charged > 0) logger.info({ charged }, "expired credit reservations charged");
    });
  }
  let server: RunningGrpcServer | undefined;
  if (meterRole) {
    every(60 * 60_000, "usage retention pruning", async () => {
      const pruned = await ledger.prune(clock() - config.meter.retention_days * DAY_MS);
      if (pruned.usage + pruned.deadLetters > 0) logger.info(pruned, "usage log pruned");
    });
    server = await startGrpcServer(config.meter.listen, [accessLogService({ meter, logger })]);
    logger.info({ address: config.meter.listen, port: server.port }, "meter listening");
  }
  return {
    credits,
    redisCredits,
    meter,
    server,
    async close() {
      for (const t of timers) clearInterval(t);
      await server?.close();
      await meter.close();
      await credits.close();
    },
  };
}
