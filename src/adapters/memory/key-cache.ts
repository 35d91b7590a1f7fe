import type { KeyDirectory } from "../../domain/admission.js";
import type { AccountRecord, ResolvedKey } from "../../domain/keys.js";

/** Where the cache loads from on a miss and polls for changes. */
export interface KeySource {
  resolveByHash(hash: string): Promise<ResolvedKey | null>;
  changedSince(since: number): Promise<{ keys: ResolvedKey[]; accounts: AccountRecord[] }>;
}

/** The in-process key directory Check reads: a warm hit is a Map lookup, never SQL. */
export interface KeyCache extends KeyDirectory {
  /** Drops a key so the next Check reloads it (revoke, rotate, limit changes). */
  invalidateKey(keyId: string): void;
  /** Drops every key of an account (plan change, suspension). */
  invalidateAccount(accountId: string): void;
  /** Polls the store once for rows changed since the last poll and applies them. */
  poll(): Promise<void>;
  /** Starts polling every `intervalMs`; returns a stop function. */
  startPolling(intervalMs: number, onError: (error: unknown) => void): () => void;
  /** Key ids seen by Check since the last call, with when; for batched last-used updates. */
  drainLastUsed(): Map<string, number>;
  size(): number;
}

/** Options for the key cache. */
export interface KeyCacheOptions {
  source: KeySource;
  clock?: () => number;
  /** How long an unknown hash stays known-unknown, so random keys cannot drive SQL load. */
  negativeTtlMs?: number;
  maxNegativeEntries?: number;
}

/** Polls overlap by this much so a row written during the previous poll with an older timestamp is not missed. */
const POLL_OVERLAP_MS = 5_000;

/** Creates the in-process key cache. */
export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const clock = options.clock ?? Date.now;
  const negativeTtlMs = options.negativeTtlMs ?? 10_000;
  const maxNegative = options.maxNegativeEntries ?? 100_000;
  const byHash = new Map<string, ResolvedKey>();
  const hashesByKey = new Map<string, Set<string>>();
  const negative = new Map<string, number>();
  const loading = new Map<string, Promise<ResolvedKey | null>>();
  let lastUsed = new Map<string, number>();
  let lastPoll = clock();
  let generation = 0;

  function remember(hash: string, resolved: ResolvedKey): void {
    byHash.set(hash, resolved);
    let hashes = hashesByKey.get(resolved.key.id);
    if (!hashes) hashesByKey.set(resolved.key.id, (hashes = new Set()));
    hashes.add(hash);
  }

  function forget(keyId: string): void {
    for (const hash of hashesByKey.get(keyId) ?? []) byHash.delete(hash);
    hashesByKey.delete(keyId);
    generation++;
  }

  function cachedKey(keyId: string): ResolvedKey | undefined {
    const first = hashesByKey.get(keyId)?.values().next().value;
    return first === undefined ? undefined : byHash.get(first);
  }

  const cache: KeyCache = {
    resolve(hash) {
      const hit = byHash.get(hash);
      if (hit) {
        lastUsed.set(hit.key.id, clock());
        return hit;
      }
      const unknownUntil = negative.get(hash);
      if (unknownUntil !== undefined) {
        if (unknownUntil > clock()) return null;
        negative.delete(hash);
      }
      let pending = loading.get(hash);
      if (!pending) {
        const startedAt = generation;
        pending = options.source.resolveByHash(hash).then(
          (resolved) => {
            loading.delete(hash);
            // An invalidation that raced the load wins: do not cache what may already be stale.
            if (startedAt !== generation) return resolved;
            if (resolved) {
              remember(hash, resolved);
              lastUsed.set(resolved.key.id, clock());
            } else {
              if (negative.size >= maxNegative) negative.clear();
              negative.set(hash, clock() + negativeTtlMs);
            }
            return resolved;
          },
          (error) => {
            loading.delete(hash);
            throw error;
          },
        );
        loading.set(hash, pending);
      }
      return pending;
    },
    invalidateKey: forget,
    invalidateAccount(accountId) {
      for (const [keyId] of [...hashesByKey]) if (cachedKey(keyId)?.account.id === accountId) forget(keyId);
    },
    async poll() {
      const startedAt = clock();
      const changes = await options.source.changedSince(lastPoll - POLL_OVERLAP_MS);
      // Only rows newer than what is cached are dropped, so the overlap window costs nothing.
      for (const { key } of changes.keys) {
        const cached = cachedKey(key.id);
        if (cached && cached.key.updatedAt !== key.updatedAt) forget(key.id);
      }
      for (const account of changes.accounts) {
        for (const [keyId] of [...hashesByKey]) {
          const cached = cachedKey(keyId);
          if (cached?.account.id === account.id && cached.account.updatedAt !== account.updatedAt) forget(keyId);
        }
      }
      if (changes.keys.some((k) => k.key.updatedAt >= lastPoll - POLL_OVERLAP_MS)) negative.clear();
      lastPoll = startedAt;
    },
    startPolling(intervalMs, onError) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        cache
          .poll()
          .catch(onError)
          .finally(() => (running = false));
      }, intervalMs);
      timer.unref();
      return () => clearInterval(timer);
    },
    drainLastUsed() {
      const drained = lastUsed;
      lastUsed = new Map();
      return drained;
    },
    size: () => byHash.size,
  };
  return cache;
}
