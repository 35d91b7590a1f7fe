import { Redis } from "ioredis";

/** How a Tollgate Redis connection behaves when Redis is slow or gone. */
export interface RedisClientOptions {
  /** Hot-path connections fail fast (no queueing while disconnected); subscribers queue until connected. */
  failFast?: boolean;
  /** Per-command deadline for hot-path connections (ms). */
  commandTimeoutMs?: number;
  /** Called for connection errors (ioredis emits them on every failed reconnect); must not throw. */
  onError?(error: Error): void;
}

/**
 * Opens an ioredis connection for Tollgate. Hot-path connections never queue commands while disconnected and never
 * retry them (a Check must get an answer now, not after Redis returns), and keep reconnecting in the background
 * forever with a capped backoff, so decisions resume without a restart once Redis is back. Connects lazily: call
 * `connectRedis` to wait for the first connection.
 */
export function createRedisClient(url: string, options: RedisClientOptions = {}): Redis {
  const failFast = options.failFast ?? true;
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: !failFast,
    maxRetriesPerRequest: failFast ? 0 : null,
    commandTimeout: failFast ? (options.commandTimeoutMs ?? 900) : undefined,
    connectTimeout: 1000,
    // Concurrent Checks share one write to the socket: one round trip for many decisions under load.
    enableAutoPipelining: failFast,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
  });
  redis.on("error", (error: Error) => options.onError?.(error));
  return redis;
}

/**
 * Waits for the first connection, up to `timeoutMs`. Returns false (the client keeps trying in the background) rather
 * than throwing: a replica starting while Redis is down serves 503s (or fails open) until Redis comes back.
 */
export async function connectRedis(redis: Redis, timeoutMs = 2000): Promise<boolean> {
  if (redis.status === "ready") return true;
  if (redis.status === "wait") redis.connect().catch(() => undefined);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on("ready", onReady);
  });
}
