import { afterAll, beforeAll, expect, it } from "vitest";
import { openStores, type Stores } from "../../src/app/stores.js";
import { loadConfig } from "../../src/config/config.js";
import { hashSecret, KEY_LENGTH } from "../../src/domain/api-key.js";
import { NotFoundError } from "../../src/adapters/sql/account-store.js";
import { describeStores, type StoreTarget } from "../support/services.js";

describeStores("SQL stores", (makeTarget) => {
  let target: StoreTarget;
  let stores: Stores;
  let now = 1_800_000_000_000;
  const clock = () => now;

  beforeAll(async () => {
    target = makeTarget();
    stores = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: target.url } }), {
      schema: target.schema,
      clock,
    });
  });
  afterAll(async () => {
    await stores?.db.close();
    await target?.cleanup();
  });

  it("migrates idempotently and seeds the default catalogue exactly once", async () => {
    const again = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: target.url } }), {
      schema: target.schema,
      clock,
    });
    await again.db.close();
    const snapshot = await stores.catalogue.snapshot();
    expect([...snapshot.models.keys()]).toEqual([
      "claude-opus-4.8",
      "claude-haiku-4.5",
      "gpt-5.5",
      "gpt-oss-120b",
      "gemini-3.1-pro",
      "gemini-2.5-flash-lite",
      "deepseek-v4-flash",
    ]);
    expect([...snapshot.plans.keys()].sort()).toEqual(["basic", "pro", "scale"]);
    expect(snapshot.plans.get("basic")).toMatchObject({ requestsPerMinute: 10, tiers: ["basic"] });
    expect(snapshot.models.get("claude-opus-4.8")!.prices.input).toBe(15_000_000n);
    expect(snapshot.models.get("gemini-2.5-flash-lite")!.prices.cachedInput).toBe(10_000n);
    expect(snapshot.providers.get("google")).toEqual({ id: "google", basePath: "/v1beta/openai" });
  });

  it("keeps an operator's catalogue edits across restarts", async () => {
    await stores.db.knex("models").where({ id: "gpt-5.5" }).update({ price_output: 31_000_000, updated_at: now });
    const again = await openStores(loadConfig({ env: { TOLLGATE_DATABASE_URL: target.url } }), {
      schema: target.schema,
      clock,
    });
    await again.db.close();
    expect((await stores.catalogue.snapshot()).models.get("gpt-5.5")!.prices.output).toBe(31_000_000n);
  });

  it("creates accounts on existing plans only", async () => {
    const account = await stores.accounts.create({ name: "Acme", planId: "pro" });
    expect(account).toMatchObject({ name: "Acme", planId: "pro", suspended: false });
    expect(account.id).toMatch(/^acct_[0-9A-Za-z]{20}$/);
    expect(await stores.accounts.get(account.id)).toEqual(account);
    await expect(stores.accounts.create({ name: "X", planId: "platinum" })).rejects.toThrow(
      new NotFoundError('plan "platinum" does not exist'),
    );
  });

  it("stores a key only as its hash and resolves it by the hash", async () => {
    const account = await stores.accounts.create({ name: "Keys", planId: "pro" });
    const issued = await stores.keys.create({
      accountId: account.id,
      name: "prod",
      labels: { env: "production" },
      allowedModels: ["gpt-5.5"],
      expiresAt: now + 1000,
    });
    expect(issued.secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
    expect(issued.secret).toHaveLength(KEY_LENGTH);
    expect(issued.key.displayPrefix).toBe(issued.secret.slice(0, 7));
    const row = await stores.db.knex("api_keys").where({ id: issued.key.id }).first();
    expect(Object.values(row).map(String).join("|")).not.toContain(issued.secret);
    expect(row.secret_hash).toBe(hashSecret(issued.secret));
    const resolved = await stores.keys.resolveByHash(hashSecret(issued.secret));
    expect(resolved?.key).toMatchObject({
      id: issued.key.id,
      labels: { env: "production" },
      allowedModels: ["gpt-5.5"],
      expiresAt: now + 1000,
    });
    expect(resolved?.account.id).toBe(account.id);
    expect(await stores.keys.resolveByHash(hashSecret("tg_" + "0".repeat(40)))).toBeNull();
  });

  it("refuses keys for unknown accounts and allow-lists naming unknown models", async () => {
    await expect(stores.keys.create({ accountId: "acct_nope" })).rejects.toThrow('account "acct_nope" does not exist');
    const account = await stores.accounts.create({ name: "Scoped", planId: "pro" });
    await expect(stores.keys.create({ accountId: account.id, allowedModels: ["gpt-5.5", "gpt-9"] })).rejects.toThrow(
      'model "gpt-9" is not in the catalogue',
    );
  });

  it("rotates to a new secret on the same key id, keeping the old one only for the grace period", async () => {
    const account = await stores.accounts.create({ name: "Rotate", planId: "pro" });
    const issued = await stores.keys.create({ accountId: account.id });
    now += 10;
    const rotated = await stores.keys.rotate(issued.key.id, 5_000);
    expect(rotated.key.id).toBe(issued.key.id);
    expect(rotated.secret).not.toBe(issued.secret);
    expect(rotated.key.previousSecretExpiresAt).toBe(now + 5_000);
    expect((await stores.keys.resolveByHash(hashSecret(issued.secret)))?.key.id).toBe(issued.key.id);
    const immediate = await stores.keys.rotate(issued.key.id);
    expect(immediate.key.previousSecretHash).toBeNull();
    expect(await stores.keys.resolveByHash(hashSecret(rotated.secret))).toBeNull();
  });

  it("revokes, refuses to rotate a revoked key, and reports changes since a time", async () => {
    const account = await stores.accounts.create({ name: "Revoke", planId: "pro" });
    const issued = await stores.keys.create({ accountId: account.id });
    const before = now;
    now += 10;
    const revoked = await stores.keys.revoke(issued.key.id);
    expect(revoked.revokedAt).toBe(now);
    await expect(stores.keys.rotate(issued.key.id)).rejects.toThrow("is revoked");
    await expect(stores.keys.revoke("key_missing")).rejects.toThrow('key "key_missing" does not exist');
    const changes = await stores.keys.changedSince(before + 1);
    expect(changes.keys.map((k) => k.key.id)).toContain(issued.key.id);
    expect(changes.keys.every((k) => k.key.updatedAt >= before + 1)).toBe(true);
  });

  it("lists an account's keys and records last use without touching updated_at", async () => {
    const account = await stores.accounts.create({ name: "List", planId: "basic" });
    const a = await stores.keys.create({ accountId: account.id, name: "a" });
    const b = await stores.keys.create({ accountId: account.id, name: "b" });
    expect((await stores.keys.listByAccount(account.id)).map((k) => k.name)).toEqual(["a", "b"]);
    await stores.keys.touch(new Map([[a.key.id, now + 99]]));
    const row = await stores.db.knex("api_keys").where({ id: a.key.id }).first();
    expect(Number(row.last_used_at)).toBe(now + 99);
    expect(Number(row.updated_at)).toBe(a.key.updatedAt);
    expect(b.key.id).not.toBe(a.key.id);
  });
});
