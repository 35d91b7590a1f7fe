// `tollgate envoy render`: the committed bootstraps are its output for the default catalogue (byte for byte), and
// whatever else it can render (a fifth provider, a plain-HTTP host, mTLS toward local roles, odd ids and paths)
// passes the strict Bootstrap parse against Envoy's protos. The CLI itself only runs a structural self-check, so
// this file is where the renderer's output is proven against the protos.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { loadConfig, type Config } from "../../src/config/config.js";
import { renderEnvoy, type EnvoyRenderOptions } from "../../src/dataplane/envoy-config/profile.js";
import { checkEnvoyConfig, EnvoyConfigError, KNOWN_TYPES } from "../../src/dataplane/envoy-config/self-check.js";
import { yamlScalar } from "../../src/dataplane/envoy-config/render.js";
import { providerUpstreams } from "../../src/edge/envoy-routes.js";
import type { Bootstrap } from "../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import type { Cluster } from "../gen/envoy/config/cluster/v3/cluster_pb.js";
import type { Route, RouteAction } from "../gen/envoy/config/route/v3/route_components_pb.js";
import { HttpConnectionManagerSchema } from "../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { UpstreamTlsContextSchema } from "../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { envoyRegistry, parseBootstrapYaml } from "../support/envoy-bootstrap.js";

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is walked loosely; a wrong path fails the test anyway
type Loose = Record<string, any>;
const fifthCatalogue = join(import.meta.dirname, "fixtures/catalogue/fifth-provider.yaml");
const dir = mkdtempSync(join(tmpdir(), "tollgate-render-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The configuration with nothing set (no TOLLGATE_* from the test's environment), plus `file`'s YAML. */
function config(yaml = ""): Config {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return loadConfig({ file, env: {} });
}

function render(options: Partial<EnvoyRenderOptions> = {}): string {
  return renderEnvoy({ profile: "production", config: config(), ...options });
}

function routes(bootstrap: Bootstrap): Route[] {
  const filter = bootstrap.staticResources!.listeners[0]!.filterChains[0]!.filters[0]!;
  if (filter.configType.case !== "typedConfig") throw new Error("expected typed_config");
  const hcm = anyUnpack(filter.configType.value, HttpConnectionManagerSchema)!;
  if (hcm.routeSpecifier.case !== "routeConfig") throw new Error("expected an inline route_config");
  return hcm.routeSpecifier.value.virtualHosts[0]!.routes;
}

function action(route: Route): RouteAction {
  if (route.action.case !== "route") throw new Error(`${route.name} is not a route action`);
  return route.action.value;
}

function cluster(bootstrap: Bootstrap, name: string): Cluster {
  const found = bootstrap.staticResources!.clusters.find((c) => c.name === name);
  if (!found) throw new Error(`no cluster ${name}`);
  return found;
}

function endpoint(c: Cluster): string {
  const address = c.loadAssignment!.endpoints[0]!.lbEndpoints[0]!.hostIdentifier;
  if (address.case !== "endpoint") throw new Error("expected an endpoint");
  const socket = address.value.address!.address;
  if (socket.case !== "socketAddress") throw new Error("expected a socket address");
  const port = socket.value.portSpecifier;
  return `${socket.value.address}:${port.case === "portValue" ? port.value : "?"}`;
}

function tlsOf(c: Cluster) {
  if (!c.transportSocket) return undefined;
  if (c.transportSocket.configType.case !== "typedConfig") throw new Error("expected typed_config");
  return anyUnpack(c.transportSocket.configType.value, UpstreamTlsContextSchema);
}

describe("a catalogue with a fifth provider (an OpenAI-compatible host for GPT-OSS 120B)", () => {
  const catalogueFile = fifthCatalogue;

  for (const profile of ["production", "local"] as const) {
    describe(profile, () => {
      const text = render({ profile, catalogueFile });
      const bootstrap = parseBootstrapYaml(text);

      it("passes the strict Bootstrap parse and the self-check", () => {
        expect(bootstrap.staticResources?.clusters.length).toBe(7);
        expect(() => checkEnvoyConfig(text)).not.toThrow();
      });

      it("routes x-tollgate-provider: oss-host to its own cluster, in catalogue order before the catch-all", () => {
        const all = routes(bootstrap);
        expect(all.map((r) => r.name)).toEqual(["openai", "anthropic", "google", "deepseek", "oss-host", "no_route"]);
        const route = all.find((r) => r.name === "oss-host")!;
        const header = route.match!.headers[0]!;
        expect(header.name).toBe("x-tollgate-provider");
        expect(header.headerMatchSpecifier).toMatchObject({
          case: "stringMatch",
          value: { matchPattern: { case: "exact", value: "oss-host" } },
        });
        expect(action(route).clusterSpecifier).toEqual({ case: "cluster", value: "provider_oss-host" });
      });

      it("reaches the host from the catalogue entry (TLS, SNI and SAN) in production, the mock locally", () => {
        const c = cluster(bootstrap, "provider_oss-host");
        if (profile === "production") {
          expect(endpoint(c)).toBe("gpt-oss.example.net:8443");
          const tls = tlsOf(c)!;
          expect(tls.sni).toBe("gpt-oss.example.net");
          expect(JSON.stringify(tls.commonTlsContext?.validationContextType.value)).toContain("gpt-oss.example.net");
        } else {
          expect(endpoint(c)).toBe("127.0.0.1:9100");
          expect(c.transportSocket).toBeUndefined();
        }
        expect(c.circuitBreakers?.thresholds).toHaveLength(1);
      });

      it("the local edge reads the same routes from it", () => {
        const upstreams = providerUpstreams(text);
        expect(Object.keys(upstreams)).toEqual(["openai", "anthropic", "google", "deepseek", "oss-host"]);
        expect(upstreams["oss-host"]).toBe(
          profile === "production" ? "https://gpt-oss.example.net:8443" : "http://127.0.0.1:9100",
        );
      });
    });
  }
});

describe("retries only where no token can have been spent; long streams", () => {
  const bootstrap = parseBootstrapYaml(render({ catalogueFile: fifthCatalogue }));
  for (const route of routes(bootstrap).filter((r) => r.action.case === "route")) {
    it(`${route.name}: connect failure, refused stream or reset before the request was sent; never 5xx or a reset after`, () => {
      const a = action(route);
      const retry = a.retryPolicy!;
      expect(retry.retryOn.split(",").sort()).toEqual(["connect-failure", "refused-stream", "reset-before-request"]);
      expect(retry.numRetries).toBeGreaterThanOrEqual(1);
      expect(retry.numRetries).toBeLessThanOrEqual(3);
      // A per-try timeout would cut a stream mid-answer (and retry it); status-code retries would repeat spent work.
      expect(retry.perTryTimeout).toBeUndefined();
      expect(retry.perTryIdleTimeout).toBeUndefined();
      expect(retry.retriableStatusCodes).toEqual([]);
      expect(retry.retriableHeaders).toEqual([]);
      expect(Number(a.timeout?.seconds ?? -1n)).toBe(0);
      expect(a.maxStreamDuration).toBeUndefined();
    });
  }

  it("provider clusters bound retries with a budget beside the circuit breakers", () => {
    for (const c of bootstrap.staticResources!.clusters.filter((c) => c.name.startsWith("provider_"))) {
      const threshold = c.circuitBreakers!.thresholds[0]!;
      expect(threshold.maxRequests, c.name).toBeGreaterThan(1024);
      expect(threshold.retryBudget?.budgetPercent?.value, c.name).toBeGreaterThan(0);
      expect(threshold.retryBudget?.budgetPercent?.value, c.name).toBeLessThanOrEqual(25);
    }
  });
});

describe("other shapes the renderer can produce pass the strict parse", () => {
  it("a provider on plain HTTP inside the network: HTTP/1.1, no TLS, default port 80", () => {
    const catalogueFile = join(dir, "http-host.yaml");
    writeFileSync(
      catalogueFile,
      readFileSync(fifthCatalogue, "utf8").replace("https://gpt-oss.example.net:8443", "http://vllm.internal"),
    );
    const bootstrap = parseBootstrapYaml(render({ catalogueFile }));
    const c = cluster(bootstrap, "provider_oss-host");
    expect(endpoint(c)).toBe("vllm.internal:80");
    expect(c.transportSocket).toBeUndefined();
  });

  it("local roles on mTLS (tls.* set): Envoy presents tls.edge's certificate and checks the roles' against its CA", () => {
    const cfg = config(
      [
        "authz: { listen: 0.0.0.0:7001 }",
        "meter: { listen: 127.0.0.1:7002 }",
        "tls:",
        "  cert_file: /srv/tls/role.crt",
        "  key_file: /srv/tls/role.key",
        "  client_ca_file: /srv/tls/client ca.crt",
        "  edge: { cert_file: /srv/tls/edge.crt, key_file: /srv/tls/edge.key, server_name: tollgate.internal }",
      ].join("\n"),
    );
    const text = renderEnvoy({ profile: "local", config: cfg });
    const bootstrap = parseBootstrapYaml(text);
    expect(() => checkEnvoyConfig(text)).not.toThrow();
    for (const [name, address] of [
      ["tollgate_authz", "127.0.0.1:7001"],
      ["tollgate_meter", "127.0.0.1:7002"],
    ] as const) {
      const c = cluster(bootstrap, name);
      expect(endpoint(c)).toBe(address);
      const tls = tlsOf(c)!;
      expect(tls.sni).toBe("tollgate.internal");
      const common = tls.commonTlsContext!;
      expect(common.alpnProtocols).toEqual(["h2"]);
      expect(common.tlsCertificates[0]!.certificateChain?.specifier).toEqual({
        case: "filename",
        value: "/srv/tls/edge.crt",
      });
      expect(JSON.stringify(common.validationContextType.value)).toContain("/srv/tls/client ca.crt");
    }
  });

  it("local roles plaintext by default, production roles on mTLS unless tls.allow_plaintext (a mesh enforces it)", () => {
    const local = parseBootstrapYaml(renderEnvoy({ profile: "local", config: config() }));
    expect(cluster(local, "tollgate_authz").transportSocket).toBeUndefined();
    const mesh = parseBootstrapYaml(render({ config: config("tls: { allow_plaintext: true }") }));
    expect(cluster(mesh, "tollgate_authz").transportSocket).toBeUndefined();
    expect(endpoint(cluster(mesh, "tollgate_authz"))).toBe("authz:9001");
    const prod = parseBootstrapYaml(render({ authzAddress: "authz.tollgate.svc:9443" }));
    expect(endpoint(cluster(prod, "tollgate_authz"))).toBe("authz.tollgate.svc:9443");
    expect(tlsOf(cluster(prod, "tollgate_authz"))!.sni).toBe("authz.tollgate.svc");
  });

  it("ids and paths YAML would read as something else are quoted, and parse back to themselves", () => {
    for (const value of [
      "123",
      "1e3",
      "true",
      "no",
      "null",
      "~",
      "a: b",
      "#x",
      "x #y",
      "-",
      "0x1F",
      "-1",
      ".5",
      'a"b',
    ]) {
      expect(parse(`v: ${yamlScalar(value)}`), value).toEqual({ v: value });
    }
    for (const value of ["api.openai.com", "127.0.0.1", "/etc/tollgate/usage.lua", "provider_oss-host"]) {
      expect(yamlScalar(value)).toBe(value);
    }
    const catalogueFile = join(dir, "numeric-id.yaml");
    writeFileSync(catalogueFile, readFileSync(fifthCatalogue, "utf8").replaceAll("oss-host", '"123"'));
    const bootstrap = parseBootstrapYaml(render({ catalogueFile }));
    expect(routes(bootstrap).map((r) => r.name)).toContain("123");
    expect(cluster(bootstrap, "provider_123")).toBeDefined();
  });
});

describe("refusals", () => {
  it("a provider without an upstream names the field and the file", () => {
    const catalogueFile = join(dir, "no-upstream.yaml");
    writeFileSync(
      catalogueFile,
      readFileSync(fifthCatalogue, "utf8").replace("    upstream: https://gpt-oss.example.net:8443\n", ""),
    );
    expect(() => render({ catalogueFile })).toThrow(
      `catalogue: providers.4.upstream: required to render Envoy's cluster for provider "oss-host" (in ${catalogueFile})`,
    );
  });

  it("an upstream with a path, credentials or another scheme is refused at load, naming the field", () => {
    for (const bad of [
      "https://h.example/v1",
      "ftp://h.example",
      "https://user:pw@h.example",
      "https://h.example?x=1",
    ]) {
      const catalogueFile = join(dir, "bad-upstream.yaml");
      writeFileSync(
        catalogueFile,
        readFileSync(fifthCatalogue, "utf8").replace("https://gpt-oss.example.net:8443", bad),
      );
      expect(() => render({ catalogueFile }), bad).toThrow(/^catalogue: providers\.4\.upstream: expected /);
    }
  });
});

describe("the structural self-check (what the CLI runs before writing)", () => {
  const good = render({ catalogueFile: fifthCatalogue });
  const edit = (mutate: (doc: Loose) => void): string => {
    const doc = parse(good);
    mutate(doc);
    return JSON.stringify(doc);
  };
  const hcm = (doc: Loose) => doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;

  it("accepts the renderer's output", () => {
    expect(() => checkEnvoyConfig(good)).not.toThrow();
  });

  it("admits only typed_config types the strict parse knows (so nothing it lets through goes unchecked here)", () => {
    for (const type of KNOWN_TYPES) expect(envoyRegistry.getMessage(type.split("/")[1]!), type).toBeDefined();
  });

  it.each([
    [
      "a route to a missing cluster",
      (d: Loose) => (hcm(d).route_config.virtual_hosts[0].routes[0].route.cluster = "provider_nope"),
      'route "openai" names cluster "provider_nope", which is not defined',
    ],
    [
      "a retry on 5xx",
      (d: Loose) => (hcm(d).route_config.virtual_hosts[0].routes[1].route.retry_policy.retry_on = "5xx"),
      'route "anthropic" retries on "5xx", which may repeat a request the provider already billed',
    ],
    [
      "a per-try timeout",
      (d: Loose) => (hcm(d).route_config.virtual_hosts[0].routes[2].route.retry_policy.per_try_timeout = "30s"),
      'route "google" sets per_try_timeout, which would cut a long stream',
    ],
    [
      "an unknown typed_config type",
      (d: Loose) => (hcm(d).http_filters[1].typed_config["@type"] = "type.googleapis.com/x.Lua"),
      'unexpected typed_config "@type" type.googleapis.com/x.Lua at static_resources.listeners.0.filter_chains.0.filters.0.typed_config.http_filters.1.typed_config',
    ],
    [
      "a cluster whose load_assignment names another",
      (d: Loose) => (d.static_resources.clusters[2].load_assignment.cluster_name = "provider_x"),
      'cluster "provider_openai" has load_assignment.cluster_name "provider_x"',
    ],
    [
      "a provider cluster without a route",
      (d: Loose) => hcm(d).route_config.virtual_hosts[0].routes.splice(4, 1),
      'cluster "provider_oss-host" has no route',
    ],
    [
      "no internal_address_config (Envoy < 1.33 then trusts RFC 1918 peers' x-envoy-* headers)",
      (d: Loose) => delete hcm(d).internal_address_config,
      "internal_address_config must list only addresses no client can have (unset or empty, Envoy 1.31-1.32 counts RFC 1918 peers as internal and obeys their x-envoy-* retry and timeout headers)",
    ],
    [
      "an empty cidr_ranges (read as RFC 1918 before Envoy 1.33)",
      (d: Loose) => (hcm(d).internal_address_config.cidr_ranges = []),
      "internal_address_config must list only addresses no client can have",
    ],
    [
      "a range clients can come from",
      (d: Loose) => (hcm(d).internal_address_config.cidr_ranges = [{ address_prefix: "10.0.0.0", prefix_len: 8 }]),
      "internal_address_config counts 10.0.0.0/8 as internal: Envoy would obey x-envoy-* retry and timeout headers from it",
    ],
    [
      "unix sockets counted as internal",
      (d: Loose) => (hcm(d).internal_address_config.unix_sockets = true),
      "internal_address_config counts unix sockets as internal",
    ],
    [
      "a control header left out of internal_only_headers",
      (d: Loose) =>
        (hcm(d).route_config.internal_only_headers = hcm(d).route_config.internal_only_headers.filter(
          (h: string) => h !== "x-envoy-upstream-stream-duration-ms",
        )),
      "route_config.internal_only_headers lacks x-envoy-upstream-stream-duration-ms, which a client could use to steer Envoy",
    ],
  ])("refuses %s", (_what, mutate, message) => {
    expect(() => checkEnvoyConfig(edit(mutate))).toThrow(EnvoyConfigError);
    expect(() => checkEnvoyConfig(edit(mutate))).toThrow(message);
  });

  it("refuses YAML with a duplicate key", () => {
    expect(() => checkEnvoyConfig(`${good}\nadmin: {}\n`)).toThrow(EnvoyConfigError);
  });
});
