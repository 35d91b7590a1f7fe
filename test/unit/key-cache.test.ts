import { describe, expect, it } from "vitest";
import { createKeyCache, type KeySource } from "../../src/adapters/memory/key-cache.js";
import type { AccountRecord, KeyRecord, ResolvedKey } from "../../src/domain/keys.js";

function record(id: string, hash: string, updatedAt = 1): ResolvedKey {
  const key: KeyRecord = {
    id,
    accountId: "acct_1",
    name: "",
    displayPrefix: "tg_abcd",
    secretHash: hash,
    previousSecretHash: null,
    previousSecretExpiresAt: null,
    expiresAt: null,
    revokedAt: null,
    labels: {},
    allowedModels: null,
    requestsPerMinute: null,
    tokensPerMinute: null,
    createdAt: 1,
    updatedAt,
  };
  const account: AccountRecord = { id: "acct_1", name: "A", planId: "pro", suspended: false, updatedAt: 1 };
  return { key, account };
}

function countingSource(rows: Map<string, ResolvedKey>) {
  const calls = { resolve: 0, changed: 0 };
  let changes: { keys: ResolvedKey[]; accounts: AccountRecord[] } = { keys: [], accounts: [] };
  const source: KeySource = {
    async resolveByHash(hash) {
      calls.resolve++;
      return rows.get(hash) ?? null;
    },
    async changedSince() {
      calls.changed++;
      return changes;
    },
  };
  return { source, calls, setChanges: (c: typeof changes) => (changes = c) };
}

describe("key cache", () => {
  it("does no store lookup on a warm hit", async () => {
    const { source, calls } = countingSource(new Map([["h1", record("key_1", "h1")]]));
    const cache = createKeyCache({ source });
    expect(await cache.resolve("h1")).toMatchObject({ key: { id: "key_1" } });
    for (let i = 0; i < 1000; i++) {
      const hit = cache.resolve("h1");
      expect(hit).not.toBeInstanceOf(Promise);
    }
    expect(calls.resolve).toBe(1);
  });

  it("shares one lookup among concurrent misses and remembers unknown hashes for a while", async () => {
    let now = 0;
    const { source, calls } = countingSource(new Map());
    const cache = createKeyCache({ source, clock: () => now, negativeTtlMs: 1000 });
    await Promise.all([cache.resolve("nope"), cache.resolve("nope"), cache.resolve("nope")]);
    expect(calls.resolve).toBe(1);
    expect(cache.resolve("nope")).toBeNull();
    now = 1001;
    await cache.resolve("nope");
    expect(calls.resolve).toBe(2);
  });

  it("drops a key on invalidation and reloads it", async () => {
    const rows = new Map([["h1", record("key_1", "h1")]]);
    const { source, calls } = countingSource(rows);
    const cache = createKeyCache({ source });
    await cache.resolve("h1");
    rows.set("h1", { ...record("key_1", "h1", 2), key: { ...record("key_1", "h1", 2).key, revokedAt: 5 } });
    cache.invalidateKey("key_1");
    expect(await cache.resolve("h1")).toMatchObject({ key: { revokedAt: 5 } });
    expect(calls.resolve).toBe(2);
  });

  it("applies polled changes only when they are newer than what is cached", async () => {
    const rows = new Map([["h1", record("key_1", "h1", 1)]]);
    const { source, calls, setChanges } = countingSource(rows);
    const cache = createKeyCache({ source });
    await cache.resolve("h1");
    setChanges({ keys: [record("key_1", "h1", 1)], accounts: [] });
    await cache.poll();
    cache.resolve("h1");
    expect(calls.resolve).toBe(1);
    setChanges({ keys: [record("key_1", "h1", 2)], accounts: [] });
    await cache.poll();
    await cache.resolve("h1");
    expect(calls.resolve).toBe(2);
  });

  it("does not cache a load that raced an invalidation", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const source: KeySource = {
      async resolveByHash() {
        await gate;
        return record("key_1", "h1");
      },
      async changedSince() {
        return { keys: [], accounts: [] };
      },
    };
    const cache = createKeyCache({ source });
    const pending = cache.resolve("h1");
    cache.invalidateKey("key_1");
    release();
    await pending;
    expect(cache.size()).toBe(0);
  });
});
