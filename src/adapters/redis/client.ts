import { Cluster, Redis } from "ioredis";

/** A Tollgate connection to Redis: one primary (with replicas), or a Redis Cluster. */
export type RedisConnection = Redis | Cluster;

/** How a Tollgate Redis connection behaves when Redis is slow or gone. */
export interface RedisClientOptions {
  /** Hot-path connections fail fast (no queueing while disconnected); subscribers queue until connected. */
  failFast?: boolean;
  /** Per-command deadline for hot-path connections (ms). */
  commandTimeoutMs?: number;
  /** Called for connection errors (ioredis emits them on every failed reconnect); must not throw. */
  onError?(error: Error): void;
}

/** A Redis Cluster address: the seed nodes and the credentials and TLS every node shares. */
export interface RedisClusterAddress {
  seeds: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

const CLUSTER_SCHEME = /^(rediss?)\+cluster:\/\/(.*)$/;

/**
 * Reads a `redis+cluster://[user[:password]@]host:port[,host:port…]` (or `rediss+cluster://` for TLS) URL: the
 * seed nodes ioredis asks for the cluster's topology (one is enough, more survive a seed being down). Returns
 * undefined for a single-node `redis://` / `rediss://` URL; throws naming what is wrong otherwise.
 */
export function parseRedisClusterUrl(url: string): RedisClusterAddress | undefined {
  const match = CLUSTER_SCHEME.exec(url);
  if (!match) return undefined;
  let rest = match[2]!;
  const address: RedisClusterAddress = { seeds: [], tls: match[1] === "rediss" };
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const credentials = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = credentials.indexOf(":");
    const user = decodeURIComponent(colon >= 0 ? credentials.slice(0, colon) : credentials);
    if (user) address.username = user;
    if (colon >= 0) address.password = decodeURIComponent(credentials.slice(colon + 1));
  }
  rest = rest.replace(/\/$/, "");
  if (/[/?#]/.test(rest))
    throw new Error("a Redis Cluster URL has no database or options: redis+cluster://host:port,…");
  for (const seed of rest.split(",")) {
    const node = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(seed.trim());
    if (!node) throw new Error(`a Redis Cluster seed must be host:port, got "${seed}"`);
    address.seeds.push({ host: node[1]!.replace(/^\[|\]$/g, ""), port: Number(node[2]) });
  }
  return address;
}

/**
 * Opens an ioredis connection for Tollgate: a `Cluster` client for a `redis+cluster://` URL, one node otherwise.
 * Hot-path connections never queue commands while disconnected and never retry them (a Check must get an answer
 * now, not after Redis returns), and keep reconnecting in the background forever with a capped backoff, so
 * decisions resume without a restart once Redis is back (or, in a cluster, once a replica has been promoted).
 * Connects lazily: call `connectRedis` to wait for the first connection.
 */
export function createRedisClient(url: string, options: RedisClientOptions = {}): RedisConnection {
  const failFast = options.failFast ?? true;
  const retry = (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1000);
  const nodeOptions = {
    maxRetriesPerRequest: failFast ? 0 : null,
    // Never replay a command sent on a previous connection: a new connection may reach another server (restarted,
    // failed over), which the credit gate must verify before any admission script runs on it.
    autoResendUnfulfilledCommands: !failFast,
    commandTimeout: failFast ? (options.commandTimeoutMs ?? 900) : undefined,
    connectTimeout: 1000,
  };
  const cluster = parseRedisClusterUrl(url);
  let redis: RedisConnection;
  if (cluster) {
    redis = new Cluster(cluster.seeds, {
      lazyConnect: true,
      enableOfflineQueue: !failFast,
      enableAutoPipelining: failFast,
      clusterRetryStrategy: retry,
      // A command that meets a closed connection (its master died) fails at once instead of waiting for a retry:
      // the Check gets 503 now; the topology is re-read on that error and every second until a replica took over.
      retryDelayOnFailover: failFast ? 0 : 100,
      slotsRefreshInterval: 1000,
      slotsRefreshTimeout: 1000,
      redisOptions: {
        ...nodeOptions,
        username: cluster.username,
        password: cluster.password,
        tls: cluster.tls ? {} : undefined,
      },
    });
  } else {
    redis = new Redis(url, {
      ...nodeOptions,
      lazyConnect: true,
      enableOfflineQueue: !failFast,
      // Concurrent Checks share one write to the socket: one round trip for many decisions under load.
      enableAutoPipelining: failFast,
      retryStrategy: retry,
    });
  }
  redis.on("error", (error: Error) => options.onError?.(error));
  return redis;
}

/** Whether `redis` is a Redis Cluster client. */
export function isCluster(redis: RedisConnection): redis is Cluster {
  return redis instanceof Cluster;
}

/** Whether the connection queues commands while disconnected (subscribers do; hot-path connections fail fast). */
export function queuesWhileDisconnected(redis: RedisConnection): boolean {
  return Boolean(redis.options.enableOfflineQueue);
}

/** The per-command deadline of a hot-path connection, if it has one. */
export function commandTimeoutOf(redis: RedisConnection): number | undefined {
  return isCluster(redis) ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout;
}

/**
 * Waits for the first connection, up to `timeoutMs`. Returns false (the client keeps trying in the background) rather
 * than throwing: a replica starting while Redis is down serves 503s (or fails open) until Redis comes back.
 */
export async function connectRedis(redis: RedisConnection, timeoutMs = 2000): Promise<boolean> {
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
