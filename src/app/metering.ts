import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { RedisConnection } from "../adapters/redis/client.js";
import { createMemoryCreditGate, type MemoryCreditGate } from "../adapters/memory/credit-gate.js";
import {
  createRedisCreditGate,
  isRedisEvictionPolicyError,
  isRedisPermissionError,
  REDIS_ACL_REQUIREMENT,
  REDIS_EVICTION_REQUIREMENT,
  type RedisCreditGate,
} from "../adapters/redis/credit-gate.js";
import type { LedgerStore } from "../adapters/sql/ledger-store.js";
import { tlsFor, type Config } from "../config/config.js";
import type { RateLimiter } from "../domain/admission.js";
import type { CreditReservations } from "../domain/credits.js";
import { accessLogService } from "../dataplane/accesslog/als-service.js";
import type { AfterCommitListener } from "../dataplane/accesslog/after-commit.js";
import {
  createMeter,
  VERIFY_NOTHING,
  type Meter,
  type MeterSpool,
  type SpooledBatch,
} from "../dataplane/accesslog/meter.js";
import type { DecisionVerifier } from "../dataplane/signing/decision-signature.js";
import { createSqliteSpool, spoolFileFor } from "../adapters/spool/sqlite-spool.js";
import { isStoreUnavailable } from "../adapters/sql/unavailable.js";
import { startGrpcServer, type RunningGrpcServer } from "../dataplane/grpc/grpc-server.js";
import type { Logger } from "../logging.js";
import type { Database } from "../adapters/sql/database.js";
import {
  acquireLease,
  createAdmissionHandover,
  createEpochStore,
  type Lease,
} from "../adapters/sql/coordination-store.js";
import { nanos } from "../domain/money.js";
import { throttled } from "./rate-limits.js";

const DAY_MS = 86_400_000;

/** How long a dead admission process keeps the single-admission lease (it heartbeats every third of this). */
const ADMISSION_LEASE_TTL_MS = 6_000;

/**
 * Without Redis, credit reservations live in the authz process's memory: two such processes on one database would
 * each spend the whole balance. So an authz process without Redis takes a lease in the database and a second one
 * refuses to start (after waiting out a predecessor that died without releasing it). The holder admits only while
 * its lease is current (see Lease.isCurrent); once another process has taken the lease over (this one stalled past
 * the TTL) it never admits again: an operator restarts it. Returns undefined with Redis (reservations are shared
 * there) or without the authz role.
 */
export async function takeAdmissionLease(
  config: Config,
  roles: readonly string[],
  db: Database,
  logger: Logger,
): Promise<Lease | undefined> {
  if (config.redis.url || !roles.includes("authz")) return undefined;
  const heartbeatWarning = throttled(10_000, (suppressed, err) =>
    logger.warn(
      { err, suppressed },
      "single-admission lease heartbeat failed; admissions answer 503 once it is older than the lease allows",
    ),
  );
  return acquireLease(db, {
    name: "admission",
    holder: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    ttlMs: ADMISSION_LEASE_TTL_MS,
    onLost: (err) =>
      logger.error(
        { err },
        "single-admission lease lost: another authz process took it over after this one stalled; this process admits nothing more (health NOT_SERVING): restart it",
      ),
    onHeartbeatError: heartbeatWarning,
    refusal: (holder) =>
      `another authz process (${holder}) is already admitting requests on this database without Redis; credit reservations are ` +
      "held in process memory, so a second one would spend the same credit twice. Run one authz process per database, or " +
      "set TOLLGATE_REDIS_URL (redis.url) on every replica to share reservations.",
  });
}

/**
 * The in-process gate's start after a predecessor: takes over the reservations it handed over when it released the
 * lease, and when it did not release it (crashed, or stalled and was replaced), fences admissions until every
 * reservation it may have taken has expired: it admitted at most until one lease TTL after the takeover, and each
 * reservation lives one reservation TTL. The fence is remembered in SQL, so a restart inside it keeps it.
 */
async function takeOverReservations(
  gate: MemoryCreditGate,
  lease: Lease,
  db: Database,
  reservationTtlMs: number,
  logger: Logger,
): Promise<void> {
  const handover = createAdmissionHandover(db);
  let until = await handover.fencedUntil();
  if (lease.predecessor) {
    // Measured from the takeover on this process's clock, not from the heartbeat the dead process stamped with its
    // own (possibly late) clock: its last successful heartbeat preceded the takeover, and it admitted for less than
    // one lease TTL of its own time after that heartbeat (Lease.isCurrent), so its last reservation expires before
    // takeover + lease TTL + reservation TTL.
    const theirs = lease.predecessor.takenOverAt + ADMISSION_LEASE_TTL_MS + reservationTtlMs;
    if (theirs > until) {
      await handover.fence(theirs);
      until = theirs;
    }
    logger.warn(
      { predecessor: lease.predecessor.holder, fencedUntil: new Date(until).toISOString() },
      "the previous authz process did not hand over its credit reservations (it crashed or stalled); paid requests get 503 until they have expired",
    );
  }
  gate.fence(until);
  const handed = await handover.read();
  await gate.restore(handed.map((r) => ({ ...r, amount: nanos(r.amount) })));
  if (handed.length > 0)
    logger.info(
      { reservations: handed.length },
      "took over the credit reservations the previous authz process handed over",
    );
}

/**
 * Start-up check: when Redis is reachable, the first attach runs now, and a Redis that refuses it (an ACL user
 * without INFO, a managed Redis that disables it) fails start-up naming the grant, rather than answering 503 forever.
 * Other failures (Redis slow, SQL hiccup) are left to the background retries.
 */
async function refuseUnverifiableRedis(gate: RedisCreditGate, redis: RedisConnection): Promise<void> {
  if (redis.status !== "ready") return;
  try {
    await gate.verifyNow();
  } catch (error) {
    if (isRedisPermissionError(error))
      throw new Error(`Redis refused the credit gate's attach script. ${REDIS_ACL_REQUIREMENT}`, { cause: error });
    if (isRedisEvictionPolicyError(error))
      throw new Error(`Redis may evict credit keys. ${REDIS_EVICTION_REQUIREMENT}`, { cause: error });
  }
}

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
    redis?: RedisConnection;
    /** Settled by the meter with each billed request's actual tokens. */
    limiter?: RateLimiter;
    /** The PostgreSQL schema the stores use (tests isolate runs by schema); part of the spool file's identity. */
    schema?: string;
    /** The database, for the Redis dataset epoch the Redis credit gate remembers there. */
    db?: Database;
    /** Told when the Redis credit gate finds Redis lost its reservations (a metric). */
    onDataLoss?(): void;
    /** Verifies the billing metadata's signature (the meter role needs it; other roles' meters only sweep). */
    verifier?: DecisionVerifier;
    /**
     * The single-admission lease (authz without Redis): the in-process gate admits only while it is current, takes
     * over what the previous holder handed over, and hands its own open reservations over when it releases it.
     */
    lease?: Lease;
    /** More after-commit work for the meter (webhook alerts). */
    listeners?: readonly AfterCommitListener[];
  },
): Promise<Metering> {
  const { ledger, logger, clock } = options;
  let credits: CreditReservations;
  let redisCredits: RedisCreditGate | undefined;
  let memoryGate: MemoryCreditGate | undefined;
  if (options.redis) {
    // The limiter's connection: no queueing while Redis is down (a Check must be answered now, and admission turns
    // the error into a 503), auto-pipelining so concurrent Checks share round trips, and one connection for the
    // combined admission script, whose sweep-index write must precede its reservation on the same connection.
    credits = redisCredits = createRedisCreditGate({
      redis: options.redis,
      source: ledger,
      reservationTtlMs: config.meter.reservation_ttl_ms,
      prefix: `${config.redis.prefix}:`,
      maxOpenPerAccount: config.credits.max_open_reservations_per_account,
      epochs: options.db && createEpochStore(options.db, config.redis.prefix),
      durable: config.redis.durable,
      clock,
      onDataLoss: ({ fencedUntil, cause }) => {
        options.onDataLoss?.();
        const what =
          cause === "emptied"
            ? "Redis lost its credit reservations (restart without persistence, flush, eviction, or failover to a replica without them)"
            : "Redis restarted or failed over and may have come back with older data (redis.durable is false)";
        logger.warn(
          { fencedUntil: new Date(fencedUntil).toISOString(), cause },
          `${what}; paid requests get 503 until every reservation taken before has expired`,
        );
      },
      onVerifyError: throttled(10_000, (suppressed, err) =>
        isRedisPermissionError(err)
          ? logger.error(
              { err, suppressed },
              `Redis refused to verify its dataset; paid requests get 503 until it is allowed. ${REDIS_ACL_REQUIREMENT}`,
            )
          : isRedisEvictionPolicyError(err)
            ? logger.error(
                { err, suppressed },
                `Redis may evict credit keys; paid requests get 503 until it is reconfigured. ${REDIS_EVICTION_REQUIREMENT}`,
              )
            : logger.warn({ err, suppressed }, "verifying the Redis dataset after a (re)connect failed; retrying"),
      ),
    });
    if (options.db) await refuseUnverifiableRedis(redisCredits, options.redis);
  } else {
    const lease = options.lease;
    credits = memoryGate = createMemoryCreditGate({
      source: ledger,
      reservationTtlMs: config.meter.reservation_ttl_ms,
      maxOpenPerAccount: config.credits.max_open_reservations_per_account,
      maxOpenTotal: config.credits.max_open_reservations_total,
      admitting: lease && (() => lease.isCurrent()),
      clock,
    });
    if (lease && options.db) {
      await takeOverReservations(memoryGate, lease, options.db, config.meter.reservation_ttl_ms, logger);
      // Whoever releases the lease (the composition root's closer, after the meter settled what it had) hands the
      // reservations still open to the next holder in the same transaction.
      const gate = memoryGate;
      const handover = createAdmissionHandover(options.db);
      lease.handOverWith(async (trx) => {
        try {
          await handover.write(trx, gate.held());
        } catch (err) {
          logger.error(
            { err },
            "handing credit reservations over failed; the admission lease is left to expire, so the next authz process fences paid requests",
          );
          throw err;
        }
      });
    }
  }
  const meterRole = options.roles.includes("meter");
  // Only the meter role spools: it is the one receiving entries nobody else holds. Other roles' meters only sweep
  // expired reservations, which stay held in the gate and are swept again when the ledger is back.
  const spool: MeterSpool | undefined = meterRole
    ? createSqliteSpool<SpooledBatch>(spoolFileFor(config.meter.spool_dir, config.database.url, options.schema))
    : undefined;
  if (meterRole && !options.verifier) throw new Error("the meter role needs the signing secret's verifier");
  const meter = createMeter({
    ledger,
    verifier: options.verifier ?? VERIFY_NOTHING,
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
    listeners: options.listeners,
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
    // Retention also makes the usage log's partitions for the days ahead (PostgreSQL): once at start, in the
    // background (rows of a day without its partition wait in the default one and move when it is made), then hourly.
    const retention = async () => {
      const pruned = await ledger.prune(clock() - config.meter.retention_days * DAY_MS);
      if (pruned.usage + pruned.deadLetters > 0) logger.info(pruned, "usage log pruned");
    };
    retention().catch((error: unknown) =>
      logger.warn({ err: error }, "usage retention pruning failed; retrying next round"),
    );
    every(60 * 60_000, "usage retention pruning", retention);
    server = await startGrpcServer(config.meter.listen, [accessLogService({ meter, logger })], {
      tls: tlsFor(config, "meter"),
    });
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
