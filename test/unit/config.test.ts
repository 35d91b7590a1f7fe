import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readCatalogueFile } from "../../src/config/catalogue-file.js";
import { loadConfig } from "../../src/config/config.js";

const fixture = (kind: string, name: string) => join(import.meta.dirname, "fixtures", kind, name);

describe("config: one schema, file then environment", () => {
  it("has embedded defaults", () => {
    const config = loadConfig({ env: {} });
    expect(config.database.url).toBe("sqlite:./data/tollgate.db");
    expect(config.authz.listen).toBe("127.0.0.1:9001");
    expect(config.meter.listen).toBe("127.0.0.1:9002");
    expect(config.admin.listen).toBe("127.0.0.1:8080");
    expect(config.catalogue.file).toMatch(/catalogue\/default\.yaml$/);
  });

  it("reads a file and lets the environment override it", () => {
    const config = loadConfig({
      file: fixture("config", "good.yaml"),
      env: { TOLLGATE_AUTHZ_LISTEN: "127.0.0.1:29001", TOLLGATE_PROVIDER_GOOGLE_API_KEY: "g-key" },
    });
    expect(config.database.url).toBe("sqlite:/tmp/tollgate-config-test.db");
    expect(config.authz.listen).toBe("127.0.0.1:29001");
    expect(config.providers).toEqual({ openai: { api_key: "sk-from-file" }, google: { api_key: "g-key" } });
  });

  const bad: Array<[string, string]> = [
    ["unknown-field.yaml", "config: authz.listne: unknown field (from FILE)"],
    ["bad-listen.yaml", 'config: authz.listen: expected "host:port", e.g. "127.0.0.1:9001" (from FILE)'],
    ["bad-database.yaml", 'config: database.url: expected "sqlite:PATH" or "postgres://…" (from FILE)'],
    [
      "bad-log-level.yaml",
      'config: log.level: Invalid option: expected one of "fatal"|"error"|"warn"|"info"|"debug"|"trace"|"silent" (from FILE)',
    ],
  ];
  for (const [name, message] of bad) {
    it(`stops on ${name} naming the field and the file`, () => {
      const file = fixture("config", name);
      expect(() => loadConfig({ file, env: {} })).toThrow(message.replace("FILE", file));
    });
  }

  it("stops on a file that is not YAML", () => {
    const file = fixture("config", "not-yaml.yaml");
    expect(() => loadConfig({ file, env: {} })).toThrow(`config: ${file} is not valid YAML`);
  });

  it("names the environment variable when the bad value came from it", () => {
    expect(() => loadConfig({ env: { TOLLGATE_REDIS_URL: "localhost:6379" } })).toThrow(
      'config: redis.url: expected "redis://host:port[/db]" or "redis+cluster://host:port,host:port" (from environment variable TOLLGATE_REDIS_URL)',
    );
    expect(() => loadConfig({ env: { TOLLGATE_DATABASE_URL: "mongodb://x" } })).toThrow(
      "(from environment variable TOLLGATE_DATABASE_URL)",
    );
  });

  it("takes a Redis Cluster as its seed nodes (redis+cluster://, rediss+cluster:// for TLS) and refuses a seed without a port", () => {
    const url = "redis+cluster://tollgate:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002";
    expect(loadConfig({ env: { TOLLGATE_REDIS_URL: url } }).redis.url).toBe(url);
    expect(loadConfig({ env: { TOLLGATE_REDIS_URL: "rediss+cluster://redis-0:6379" } }).redis.url).toBe(
      "rediss+cluster://redis-0:6379",
    );
    for (const bad of ["redis+cluster://10.0.0.1", "redis+cluster://10.0.0.1:7000,", "redis+cluster://h:7000/1"])
      expect(() => loadConfig({ env: { TOLLGATE_REDIS_URL: bad } })).toThrow(
        'config: redis.url: expected "redis://host:port[/db]" or "redis+cluster://host:port,host:port"',
      );
  });

  it("refuses a missing config file by name", () => {
    expect(() => loadConfig({ file: "/nonexistent/tollgate.yaml", env: {} })).toThrow(
      "config: cannot read /nonexistent/tollgate.yaml",
    );
  });
});

describe("catalogue file", () => {
  it("loads the default catalogue with exact prices", () => {
    const file = readCatalogueFile(join(import.meta.dirname, "../../catalogue/default.yaml"));
    expect(file.models).toHaveLength(7);
    expect(file.models.find((m) => m.id === "deepseek-v4-flash")!.prices).toEqual({
      input: 280_000n,
      cachedInput: 28_000n,
      output: 420_000n,
    });
  });

  const bad: Array<[string, string]> = [
    ["bad-price.yaml", 'catalogue: models.0.price_input: expected USD per million tokens as a string, e.g. "1.25"'],
    ["numeric-price.yaml", "catalogue: models.6.price_output: Invalid input: expected string, received number"],
    ["unknown-provider.yaml", 'catalogue: models.6.provider: unknown provider "mistral"'],
    ["bad-tier.yaml", 'catalogue: plans.0.tiers.0: Invalid option: expected one of "basic"|"premium"'],
    ["extra-field.yaml", 'catalogue: models.6: Unrecognized key: "markup"'],
  ];
  for (const [name, message] of bad) {
    it(`stops on ${name} with its exact error`, () => {
      const path = fixture("catalogue", name);
      expect(() => readCatalogueFile(path)).toThrow(`${message} (in ${path})`);
    });
  }
});
