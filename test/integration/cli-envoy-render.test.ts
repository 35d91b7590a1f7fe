// `tollgate envoy render` as operators run it: no server, no database; the catalogue and the config in, the Envoy
// bootstrap out (to --out, or stdout), and nothing written when the render or its self-check fails.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";
import { renderEnvoy } from "../../src/dataplane/envoy-config/profile.js";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "tollgate-envoy-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fifth = join(import.meta.dirname, "../contract/fixtures/catalogue/fifth-provider.yaml");
// No TOLLGATE_* from the developer's shell may change what is rendered.
const cleanEnv = Object.fromEntries(
  Object.keys(process.env)
    .filter((k) => k.startsWith("TOLLGATE_"))
    .map((k) => [k, ""]),
);

describe("tollgate envoy render", () => {
  it("writes the production bootstrap for the configured catalogue to --out", async () => {
    const out = join(dir, "envoy.yaml");
    const run = await runCli(["envoy", "render", "--catalogue", fifth, "--out", out], cleanEnv);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(readFileSync(out, "utf8")).toBe(
      renderEnvoy({ profile: "production", config: loadConfig({ env: {} }), catalogueFile: fifth }),
    );
    expect(run.stdout).toContain(`wrote ${out}`);
    expect(run.stdout).toContain("openai, anthropic, google, deepseek, oss-host");
  });

  it("prints the local bootstrap on stdout with --local, with the roles where the config says they listen", async () => {
    const config = join(dir, "tollgate.yaml");
    writeFileSync(config, "authz: { listen: 127.0.0.1:7101 }\n");
    const run = await runCli(["envoy", "render", "--local", "--config", config], cleanEnv);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(renderEnvoy({ profile: "local", config: loadConfig({ file: config, env: {} }) }));
    expect(run.stdout).toContain("socket_address: { address: 127.0.0.1, port_value: 7101 }");
  });

  it("refuses a provider without an upstream, naming the field and file, and writes nothing", async () => {
    const catalogue = join(dir, "no-upstream.yaml");
    writeFileSync(catalogue, readFileSync(fifth, "utf8").replace("    upstream: https://api.anthropic.com\n", ""));
    const out = join(dir, "never.yaml");
    const run = await runCli(["envoy", "render", "--catalogue", catalogue, "--out", out], cleanEnv);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `catalogue: providers.1.upstream: required to render Envoy's cluster for provider "anthropic"`,
    );
    expect(existsSync(out)).toBe(false);
  });

  describe("--from-database: the providers the gateway serves, each one's upstream from the catalogue file", () => {
    it("renders the database's providers and refuses one the file gives no upstream", async () => {
      const env = { ...cleanEnv, TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "five.db")}` };
      // A fresh database is seeded from --catalogue, as `serve` would seed it from catalogue.file.
      const seeded = await runCli(["envoy", "render", "--from-database", "--catalogue", fifth], env);
      expect(seeded.stderr).toBe("");
      expect(seeded.code).toBe(0);
      expect(seeded.stdout).toContain("cluster: provider_oss-host");
      const stale = await runCli(["envoy", "render", "--from-database"], env);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toContain(
        'provider "oss-host" is in the database but the catalogue file gives it no upstream',
      );
      expect(stale.stdout).toBe("");
    });

    it("leaves out, with a warning, a provider the file has and the database does not (authz never routes to it)", async () => {
      const env = { ...cleanEnv, TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "four.db")}` };
      expect((await runCli(["envoy", "render", "--from-database"], env)).code).toBe(0);
      const run = await runCli(["envoy", "render", "--from-database", "--catalogue", fifth], env);
      expect(run.code).toBe(0);
      expect(run.stdout).not.toContain("oss-host");
      expect(run.stdout).toContain("cluster: provider_deepseek");
      expect(run.stderr).toContain('provider "oss-host" is not in the database');
    });
  });

  it("is a usage error without `render`", async () => {
    const run = await runCli(["envoy", "draw"], cleanEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown envoy command "draw" (render)');
  });
});
