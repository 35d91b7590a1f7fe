import { isCluster, type RedisConnection } from "./client.js";
import type { KeyChange, KeyEvents } from "../../domain/key-events.js";

/** The pub/sub channel key changes travel on. */
export function keyEventsChannel(prefix: string): string {
  return `${prefix}:keys:changed`;
}

/**
 * Publishes key changes on Redis; a failure is reported to `onError` (the poll still propagates the change). Plain
 * PUBLISH, also in a Redis Cluster, which forwards it to every node, so a subscriber on any node hears it: key changes
 * are few (admin operations), so sharded pub/sub (SPUBLISH) would save nothing worth a subscriber tied to one shard.
 */
export function createRedisKeyEvents(options: {
  redis: RedisConnection;
  prefix: string;
  onError?(error: unknown): void;
}): KeyEvents {
  const channel = keyEventsChannel(options.prefix);
  return {
    async publish(change) {
      try {
        await options.redis.publish(channel, JSON.stringify(change));
      } catch (error) {
        options.onError?.(error);
      }
    },
  };
}

/** A running subscription; `close` unsubscribes and disconnects its connection. */
export interface KeyEventsSubscription {
  /** Resolves once the first SUBSCRIBE is confirmed (tests wait on it; production need not). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Subscribes `subscriber` (a dedicated connection: a subscribed connection can run nothing else) to key changes and
 * calls `onChange` for each. ioredis resubscribes after a reconnect; changes published while disconnected are caught
 * by the key-cache poll, and `onResubscribed` lets the caller drop everything to close that gap sooner.
 */
export function subscribeKeyEvents(options: {
  subscriber: RedisConnection;
  prefix: string;
  onChange(change: KeyChange): void;
  onResubscribed?(): void;
  onError?(error: unknown): void;
}): KeyEventsSubscription {
  const { subscriber } = options;
  const channel = keyEventsChannel(options.prefix);
  let subscribedOnce = false;
  subscriber.on("message", (from: string, message: string) => {
    if (from !== channel) return;
    try {
      const parsed = JSON.parse(message) as unknown;
      if (parsed === null || typeof parsed !== "object") return;
      const { keyId, accountId } = parsed as Record<string, unknown>;
      options.onChange({
        keyId: typeof keyId === "string" ? keyId : undefined,
        accountId: typeof accountId === "string" ? accountId : undefined,
      });
    } catch (error) {
      options.onError?.(error);
    }
  });
  subscriber.on("ready", () => {
    if (subscribedOnce) options.onResubscribed?.();
  });
  // A cluster client is ready once; when a node leaves the topology (failed, failed over) ioredis moves the
  // subscription to another node if it was there, and changes published meanwhile may be lost: drop everything.
  if (isCluster(subscriber))
    subscriber.on("-node", () => {
      if (subscribedOnce) options.onResubscribed?.();
    });
  const ready = subscriber.subscribe(channel).then(
    () => {
      subscribedOnce = true;
    },
    (error: unknown) => options.onError?.(error),
  );
  return {
    ready,
    async close() {
      subscriber.disconnect();
    },
  };
}
