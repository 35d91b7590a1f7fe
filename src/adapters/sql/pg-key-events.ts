import pg from "pg";
import type { Knex } from "knex";
import type { KeyChange, KeyEvents } from "../../domain/key-events.js";

/**
 * The LISTEN/NOTIFY channel key changes travel on. NOTIFY is scoped to one database; a schema (tests give each suite
 * its own) gets its own channel so suites sharing a database do not hear each other.
 */
export function pgKeyEventsChannel(schema?: string): string {
  return schema ? `tollgate_keys_${schema}` : "tollgate_keys";
}

/**
 * Publishes key changes with pg_notify on the store's own pool, for PostgreSQL deployments without Redis. A failure
 * goes to `onError` (the key-cache poll still propagates the change): the mutation has already committed.
 */
export function createPgKeyEvents(options: {
  knex: () => Knex;
  channel: string;
  onError?(error: unknown): void;
}): KeyEvents {
  return {
    async publish(change) {
      try {
        await options.knex().raw("select pg_notify(?, ?)", [options.channel, JSON.stringify(change)]);
      } catch (error) {
        options.onError?.(error);
      }
    },
  };
}

/** A running LISTEN; `close` stops reconnecting and ends its connection. */
export interface PgKeyEventsSubscription {
  /** Resolves once the first LISTEN is in place (tests wait on it; production need not). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** Options for {@link subscribePgKeyEvents}. */
export interface PgKeyEventsOptions {
  url: string;
  channel: string;
  onChange(change: KeyChange): void;
  /** After a reconnect: notifications sent while disconnected are lost, so the caller polls once. */
  onReconnected?(): void;
  onError?(error: unknown): void;
  /** First and largest reconnect delay (doubling in between). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Reads a notification payload; anything but `{keyId?, accountId?}` strings is ignored. */
function changeFrom(payload: string | undefined): KeyChange | undefined {
  if (!payload) return undefined;
  const parsed = JSON.parse(payload) as unknown;
  if (parsed === null || typeof parsed !== "object") return undefined;
  const { keyId, accountId } = parsed as Record<string, unknown>;
  return {
    keyId: typeof keyId === "string" ? keyId : undefined,
    accountId: typeof accountId === "string" ? accountId : undefined,
  };
}

/**
 * LISTENs for key changes on a dedicated connection (a pooled one would be handed to queries and lose the LISTEN).
 * On a lost connection it reconnects with doubling backoff and, once listening again, calls `onReconnected`.
 */
export function subscribePgKeyEvents(options: PgKeyEventsOptions): PgKeyEventsSubscription {
  const minBackoff = options.minBackoffMs ?? 100;
  const maxBackoff = options.maxBackoffMs ?? 5_000;
  let closed = false;
  let client: pg.Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  let backoff = minBackoff;
  let connectedOnce = false;
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const retry = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, backoff);
    timer.unref();
    backoff = Math.min(backoff * 2, maxBackoff);
  };

  async function connect(): Promise<void> {
    const c = new pg.Client({ connectionString: options.url });
    client = c;
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (error) options.onError?.(error);
      c.removeAllListeners("notification");
      void c.end().catch(() => {});
      if (client === c) client = undefined;
      retry();
    };
    c.on("error", onLost);
    c.on("end", () => onLost());
    c.on("notification", (message) => {
      if (message.channel !== options.channel) return;
      try {
        const change = changeFrom(message.payload);
        if (change) options.onChange(change);
      } catch (error) {
        options.onError?.(error);
      }
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${c.escapeIdentifier(options.channel)}`);
    } catch (error) {
      onLost(error);
      return;
    }
    if (closed) {
      await c.end().catch(() => {});
      return;
    }
    backoff = minBackoff;
    if (connectedOnce) options.onReconnected?.();
    connectedOnce = true;
    markReady();
  }

  void connect();
  return {
    ready,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = undefined;
      c?.removeAllListeners("end");
      await c?.end().catch(() => {});
    },
  };
}
