import { describe, expect, it } from "vitest";
import { parseRedisClusterUrl } from "../../src/adapters/redis/client.js";
import { CLUSTER_SLOTS, keySlot, slotTag } from "../../src/adapters/redis/cluster-epochs.js";

describe("Redis Cluster URL", () => {
  it("reads the seed nodes, credentials and TLS of redis+cluster:// and rediss+cluster://", () => {
    expect(parseRedisClusterUrl("redis+cluster://10.0.0.1:7000,10.0.0.2:7001")).toEqual({
      seeds: [
        { host: "10.0.0.1", port: 7000 },
        { host: "10.0.0.2", port: 7001 },
      ],
      tls: false,
    });
    expect(parseRedisClusterUrl("rediss+cluster://tollgate:p%40ss@redis-0.redis:6379,[::1]:6380/")).toEqual({
      seeds: [
        { host: "redis-0.redis", port: 6379 },
        { host: "::1", port: 6380 },
      ],
      username: "tollgate",
      password: "p@ss",
      tls: true,
    });
    expect(parseRedisClusterUrl("redis://127.0.0.1:6379/2")).toBeUndefined();
  });

  it("refuses a seed without a port and a database or options", () => {
    expect(() => parseRedisClusterUrl("redis+cluster://10.0.0.1")).toThrow('seed must be host:port, got "10.0.0.1"');
    expect(() => parseRedisClusterUrl("redis+cluster://10.0.0.1:7000/3")).toThrow("no database or options");
  });
});

describe("Redis Cluster slots", () => {
  it("hashes keys as Redis does (CRC16/XMODEM mod 16384, hash tags)", () => {
    expect(keySlot("123456789")).toBe(0x31c3); // the CRC16 check value of the Redis Cluster specification
    expect(keySlot("{user1000}.following")).toBe(keySlot("{user1000}.followers"));
    expect(keySlot("{user1000}.following")).toBe(keySlot("user1000"));
    expect(keySlot("foo{}{bar}")).not.toBe(keySlot("bar")); // an empty tag: the whole key is hashed
    expect(keySlot("foo{{bar}}zap")).toBe(keySlot("{bar")); // the tag runs from the first { to the next }
  });

  it("has a tag for every slot that lands in it, the same in every process", () => {
    const seen = new Set<string>();
    for (let slot = 0; slot < CLUSTER_SLOTS; slot++) {
      const tag = slotTag(slot);
      expect(keySlot(`tollgate:{${tag}}:epoch`)).toBe(slot);
      seen.add(tag);
    }
    expect(seen.size).toBe(CLUSTER_SLOTS);
    // Pinned: every process (and every version) must name a slot's epoch keys alike, or a dataset looks lost.
    expect([slotTag(0), slotTag(1), slotTag(16383)]).toEqual(["e5404", "e88520", "e23149"]);
  });
});
