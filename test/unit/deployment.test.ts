import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";
import { execForm } from "../support/dockerfile.js";
import { checkPlaintextListeners, loadConfig, splitListen } from "../../src/config/config.js";

const root = join(import.meta.dirname, "../..");
const compose = parseYaml(readFileSync(join(root, "docker-compose.yaml"), "utf8"), { merge: true }) as {
  services: Record<
    string,
    {
      image?: string;
      build?: string;
      command?: string[];
      environment?: Record<string, string>;
      ports?: string[];
      expose?: string[];
      volumes?: string[];
      healthcheck?: { test: string[] };
    }
  >;
};
const envoy = parseYaml(readFileSync(join(root, "envoy/envoy.yaml"), "utf8"));
const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");

interface Cluster {
  name: string;
  load_assignment: {
    endpoints: Array<{
      lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }>;
    }>;
  };
}
const clusters = new Map<string, { host: string; port: number }>(
  (envoy.static_resources.clusters as Cluster[]).map((c) => {
    const socket = c.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address;
    return [c.name, { host: socket.address, port: socket.port_value }];
  }),
);

/** A value for every ${VAR:?message} (compose refuses to start without it), as an operator would set. */
const REQUIRED_VALUE = "operator-supplied-value-0123456789abcdef";

/** The compose environment with ${VAR:-default} interpolated as docker compose would with an empty environment. */
function environment(service: string): Record<string, string> {
  const env = compose.services[service]!.environment ?? {};
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      String(v)
        .replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1")
        .replace(/\$\{[A-Z_]+:\?[^}]*\}/g, REQUIRED_VALUE),
    ]),
  );
}

describe("deployment files agree with envoy.yaml and the config schema", () => {
  it("has the production topology", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["admin", "authz", "envoy", "meter", "postgres", "redis"]);
  });

  it("pins every third-party image to a version", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      // Our own image is built from this checkout (`build: .`), so its tag names the build, not a download.
      if (!service.image || service.image.startsWith("tollgate:")) continue;
      expect(service.image, name).toMatch(/:v?\d+\.\d+/);
    }
    expect(compose.services.envoy!.image).toMatch(/^envoyproxy\/envoy:v1\.(3[1-9]|[4-9]\d)\.\d+$/);
  });

  it("runs Envoy with envoy/envoy.yaml and the usage filter where envoy.yaml loads it", () => {
    const volumes = compose.services.envoy!.volumes!;
    expect(volumes).toContain("./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro");
    const lua = JSON.stringify(envoy).match(/"filename":"(\/etc\/tollgate\/usage\.lua)"/)![1];
    expect(volumes).toContain(`./envoy/usage.lua:${lua}:ro`);
    const logPath = JSON.stringify(envoy).match(/"path":"(\/var\/log\/tollgate\/[^"]+)"/)![1]!;
    expect(volumes.some((v) => v.startsWith("envoy-logs:") && logPath.startsWith(v.split(":")[1]!))).toBe(true);
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    expect(compose.services.envoy!.ports).toContain(`${listener}:${listener}`);
  });

  for (const [role, cluster, variable] of [
    ["authz", "tollgate_authz", "TOLLGATE_AUTHZ_LISTEN"],
    ["meter", "tollgate_meter", "TOLLGATE_METER_LISTEN"],
  ] as const) {
    it(`serves ${role} where envoy.yaml's ${cluster} cluster points`, () => {
      const target = clusters.get(cluster)!;
      expect(target.host).toBe(role);
      const service = compose.services[role]!;
      expect(service.command).toEqual(["serve", "--role", role]);
      const config = loadConfig({ env: environment(role) });
      const listen = splitListen(role === "authz" ? config.authz.listen : config.meter.listen);
      expect(listen).toEqual({ host: "0.0.0.0", port: target.port });
      expect(environment(role)[variable]).toBe(`0.0.0.0:${target.port}`);
      expect(service.expose).toContain(String(target.port));
      expect(service.healthcheck!.test).toEqual([
        "CMD",
        "node",
        "dist/cli/main.js",
        "health",
        "--address",
        `127.0.0.1:${target.port}`,
        "--ca",
        config.tls.client_ca_file,
        "--cert",
        config.tls.cert_file,
        "--key",
        config.tls.key_file,
        "--server-name",
        role,
      ]);
    });

    it(`keeps ${role} off the host's ports, behind mTLS with files from the mounted ./tls, and signing with the shared secret`, () => {
      const service = compose.services[role]!;
      expect(service.ports).toBeUndefined();
      const config = loadConfig({ env: environment(role) });
      expect([config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file]).toEqual([
        `/etc/tollgate/tls/${role}.crt`,
        `/etc/tollgate/tls/${role}.key`,
        "/etc/tollgate/tls/ca.crt",
      ]);
      expect(service.volumes).toContain("./tls:/etc/tollgate/tls:ro");
      expect(compose.services[role]!.environment!.TOLLGATE_SIGNING_SECRET).toMatch(/^\$\{TOLLGATE_SIGNING_SECRET:\?/);
      expect(config.signing.secret).toBe(REQUIRED_VALUE);
    });
  }

  it("starts authz and meter on 0.0.0.0 because they serve mTLS; the same listeners without TOLLGATE_TLS_* would be refused", () => {
    for (const role of ["authz", "meter"] as const) {
      const env = environment(role);
      expect(checkPlaintextListeners(loadConfig({ env }), [role]), role).toEqual([]);
      expect(env.TOLLGATE_TLS_ALLOW_PLAINTEXT, role).toBeUndefined();
      const plaintext = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("TOLLGATE_TLS_")));
      expect(() => checkPlaintextListeners(loadConfig({ env: plaintext }), [role]), role).toThrow(
        /tls\.cert_file: required when/,
      );
    }
  });

  it("gives Envoy the certificate files envoy.yaml's control-plane clusters name", () => {
    expect(compose.services.envoy!.volumes).toContain("./tls:/etc/tollgate/tls:ro");
    const files = JSON.stringify(envoy.static_resources.clusters.filter((c: Cluster) => c.name.startsWith("tollgate_")))
      .match(/"filename":"[^"]+"/g)!
      .map((f) => f.slice('"filename":"'.length, -1));
    expect(new Set(files)).toEqual(
      new Set(["/etc/tollgate/tls/envoy.crt", "/etc/tollgate/tls/envoy.key", "/etc/tollgate/tls/ca.crt"]),
    );
  });

  it("gives every Tollgate role a config the schema accepts, on PostgreSQL and Redis", () => {
    for (const role of ["authz", "meter", "admin"]) {
      const config = loadConfig({ env: environment(role) });
      expect(config.database.url).toMatch(/^postgres:\/\/tollgate:tollgate@postgres:5432\/tollgate$/);
      expect(config.redis.url).toBe("redis://redis:6379");
    }
    const pg = compose.services.postgres!.environment!;
    expect(`postgres://${pg.POSTGRES_USER}:${pg.POSTGRES_PASSWORD}@postgres:5432/${pg.POSTGRES_DB}`).toBe(
      environment("authz").TOLLGATE_DATABASE_URL,
    );
    const admin = splitListen(loadConfig({ env: environment("admin") }).admin.listen);
    expect(compose.services.admin!.ports).toContain(`${admin.port}:${admin.port}`);
  });

  it("builds an image exposing the roles' default ports with the CLI as entry point", () => {
    const defaults = loadConfig({ env: {} });
    const ports = [defaults.authz.listen, defaults.meter.listen, defaults.admin.listen].map((l) =>
      String(splitListen(l).port),
    );
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${ports.join(" ")}$`, "m"));
    expect(dockerfile).toMatch(/^FROM node:20-/m);
    // node with the flags serve wants (README, Operations).
    expect(execForm(dockerfile, "ENTRYPOINT")).toEqual(["node", ...SERVE_NODE_FLAGS, "dist/cli/main.js"]);
    // ... while the CLI's shebang stays plain: `env -S`, needed to pass a flag there, is missing from BusyBox.
    expect(readFileSync(join(root, "src/cli/main.ts"), "utf8")).toMatch(/^#!\/usr\/bin\/env node\n/);
    expect(dockerfile).toContain("COPY catalogue ./catalogue");
  });

  it("starts serve from `npm start` with the node flags serve wants, as the image does", () => {
    const scripts = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: { start: string } })
      .scripts;
    expect(scripts.start).toContain(`node ${SERVE_NODE_FLAGS.join(" ")} dist/cli/main.js serve`);
  });

  it("runs the image's default command (every role, no data plane) on loopback defaults, which need no TLS; published on 0.0.0.0 it needs tls.*", () => {
    expect(dockerfile).toMatch(/^CMD \["serve", "--no-data-plane"\]$/m);
    const all = ["authz", "meter", "admin"];
    expect(checkPlaintextListeners(loadConfig({ env: {} }), all)).toEqual([]);
    expect(() => checkPlaintextListeners(loadConfig({ env: { TOLLGATE_AUTHZ_LISTEN: "0.0.0.0:9001" } }), all)).toThrow(
      /authz listens on 0\.0\.0\.0:9001/,
    );
  });
});
