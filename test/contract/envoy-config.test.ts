// Contract test for the Envoy bootstraps in envoy/*.yaml. No Envoy binary can be installed here, so each file is
// parsed the way Envoy's own loader would reject it: strict protobuf JSON against the real Envoy protos
// (envoy.config.bootstrap.v3.Bootstrap), with every typed_config resolved through a registry of the extension
// types we use. Then the Tollgate contract (DESIGN.md, "Envoy contract") is checked on the parsed messages, and
// the production and local files are compared so they cannot drift apart.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { create, createRegistry, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { anyUnpack, type Any, type Duration } from "@bufbuild/protobuf/wkt";
import {
  BootstrapSchema,
  file_envoy_config_bootstrap_v3_bootstrap,
  type Bootstrap,
} from "../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { Cluster_DiscoveryType, type Cluster } from "../gen/envoy/config/cluster/v3/cluster_pb.js";
import type { Address } from "../gen/envoy/config/core/v3/address_pb.js";
import { ApiVersion } from "../gen/envoy/config/core/v3/config_source_pb.js";
import type { GrpcService } from "../gen/envoy/config/core/v3/grpc_service_pb.js";
import type { AccessLog } from "../gen/envoy/config/accesslog/v3/accesslog_pb.js";
import {
  HeaderMutationRulesSchema,
  type HeaderMutationRules,
} from "../gen/envoy/config/common/mutation_rules/v3/mutation_rules_pb.js";
import type { Route, RouteAction } from "../gen/envoy/config/route/v3/route_components_pb.js";
import { AccessLogType } from "../gen/envoy/data/accesslog/v3/accesslog_pb.js";
import {
  FileAccessLogSchema,
  file_envoy_extensions_access_loggers_file_v3_file,
} from "../gen/envoy/extensions/access_loggers/file/v3/file_pb.js";
import {
  HttpGrpcAccessLogConfigSchema,
  file_envoy_extensions_access_loggers_grpc_v3_als,
} from "../gen/envoy/extensions/access_loggers/grpc/v3/als_pb.js";
import {
  ExtAuthzSchema,
  file_envoy_extensions_filters_http_ext_authz_v3_ext_authz,
} from "../gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.js";
import {
  LuaSchema,
  file_envoy_extensions_filters_http_lua_v3_lua,
} from "../gen/envoy/extensions/filters/http/lua/v3/lua_pb.js";
import {
  RouterSchema,
  file_envoy_extensions_filters_http_router_v3_router,
} from "../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import {
  HttpConnectionManagerSchema,
  file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager,
  type HttpConnectionManager,
} from "../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import {
  UpstreamTlsContextSchema,
  file_envoy_extensions_transport_sockets_tls_v3_tls,
} from "../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import {
  HttpProtocolOptionsSchema,
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
  type HttpProtocolOptions,
} from "../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { SubjectAltNameMatcher_SanType } from "../gen/envoy/extensions/transport_sockets/tls/v3/common_pb.js";
import {
  AUTHZ_METADATA_KEYS,
  AUTHZ_METADATA_NAMESPACE,
  PROVIDER_REMOVED_REQUEST_HEADERS,
  PROVIDER_SET_REQUEST_HEADERS,
} from "../../src/contract/index.js";
import { compileLocalReply } from "../../src/edge/local-reply.js";
import { HeaderValueOption_HeaderAppendAction } from "../gen/envoy/config/core/v3/base_pb.js";

const root = join(import.meta.dirname, "../..");
const envoyDir = join(root, "envoy");

/** Every extension type the configs may name in a typed_config; anything else must fail to parse. */
const registry = createRegistry(
  file_envoy_config_bootstrap_v3_bootstrap,
  file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager,
  file_envoy_extensions_filters_http_ext_authz_v3_ext_authz,
  file_envoy_extensions_filters_http_lua_v3_lua,
  file_envoy_extensions_filters_http_router_v3_router,
  file_envoy_extensions_access_loggers_grpc_v3_als,
  file_envoy_extensions_access_loggers_file_v3_file,
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
);

type Variant = "production" | "local";

/** What differs between the two files; everything else must be identical. */
const variants: Record<string, { variant: Variant; lua: string; accessLog: string; authz: string; meter: string }> = {
  "envoy.yaml": {
    variant: "production",
    lua: "/etc/tollgate/usage.lua",
    accessLog: "/var/log/tollgate/access.json",
    authz: "authz:9001",
    meter: "meter:9002",
  },
  "envoy.local.yaml": {
    variant: "local",
    lua: "envoy/usage.lua",
    accessLog: "/tmp/tollgate-envoy-access.json",
    authz: "127.0.0.1:9001",
    meter: "127.0.0.1:9002",
  },
};

const providers = {
  openai: "api.openai.com",
  anthropic: "api.anthropic.com",
  google: "generativelanguage.googleapis.com",
  deepseek: "api.deepseek.com",
} as const;

const jsonLogFormat = {
  start_time: "%START_TIME%",
  request_id: "%REQ(X-REQUEST-ID)%",
  response_code: "%RESPONSE_CODE%",
  duration_ms: "%DURATION%",
  response_flags: "%RESPONSE_FLAGS%",
  request_tx_duration_ms: "%REQUEST_TX_DURATION%",
  authz: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%",
  usage: "%DYNAMIC_METADATA(tollgate.usage)%",
  upstream_host: "%UPSTREAM_HOST%",
  log_type: "%ACCESS_LOG_TYPE%",
};

const noRouteBody = { error: { message: "no route", type: "tollgate_error", param: null, code: "unavailable" } };

/** Headers the authz service mutates on an allowed request (all with append_action OVERWRITE_IF_EXISTS_OR_ADD, i.e. a "set"). */
const authzMutatedHeaders = [
  ":path",
  "authorization",
  "x-tollgate-provider",
  "x-tollgate-upstream-model",
  "x-tollgate-stream",
];

function readYaml(file: string): JsonValue {
  return parse(readFileSync(join(envoyDir, file), "utf8")) as JsonValue;
}

function parseBootstrap(json: JsonValue): Bootstrap {
  return fromJson(BootstrapSchema, json, { registry });
}

function seconds(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) + d.nanos / 1e9;
}

function hostPort(address: Address | undefined): string {
  if (address?.address.case !== "socketAddress") throw new Error("expected a socket address");
  const sa = address.address.value;
  if (sa.portSpecifier.case !== "portValue") throw new Error("expected a port value");
  return `${sa.address}:${sa.portSpecifier.value}`;
}

function envoyGrpcCluster(service: GrpcService | undefined): string {
  if (service?.targetSpecifier.case !== "envoyGrpc") throw new Error("expected an envoy_grpc service");
  return service.targetSpecifier.value.clusterName;
}

function typedConfig(config: { case: string | undefined; value?: unknown }): Any {
  if (config.case !== "typedConfig") throw new Error(`expected typed_config, got ${String(config.case)}`);
  return config.value as Any;
}

function hcmOf(bootstrap: Bootstrap): HttpConnectionManager {
  const listener = bootstrap.staticResources?.listeners[0];
  const filter = listener?.filterChains[0]?.filters[0];
  if (!filter) throw new Error("no network filter");
  const hcm = anyUnpack(typedConfig(filter.configType), HttpConnectionManagerSchema);
  if (!hcm) throw new Error("first network filter is not an HttpConnectionManager");
  return hcm;
}

function routesOf(hcm: HttpConnectionManager): Route[] {
  if (hcm.routeSpecifier.case !== "routeConfig") throw new Error("expected an inline route_config");
  const vhosts = hcm.routeSpecifier.value.virtualHosts;
  expect(vhosts).toHaveLength(1);
  return vhosts[0]!.routes;
}

function routeAction(route: Route): RouteAction {
  if (route.action.case !== "route") throw new Error(`route ${route.name} does not forward`);
  return route.action.value;
}

function protocolOptions(cluster: Cluster): HttpProtocolOptions {
  const any = cluster.typedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
  if (!any) throw new Error(`cluster ${cluster.name} has no upstream HttpProtocolOptions`);
  const options = anyUnpack(any, HttpProtocolOptionsSchema);
  if (!options) throw new Error(`cluster ${cluster.name}: wrong protocol options type ${any.typeUrl}`);
  return options;
}

function clusterEndpoint(cluster: Cluster): string {
  const endpoints = cluster.loadAssignment?.endpoints.flatMap((e) => e.lbEndpoints) ?? [];
  expect(endpoints, cluster.name).toHaveLength(1);
  const lb = endpoints[0]!;
  if (lb.hostIdentifier.case !== "endpoint") throw new Error("expected an endpoint");
  return hostPort(lb.hostIdentifier.value.address);
}

function logTypes(log: AccessLog): { types: AccessLogType[]; exclude: boolean } {
  if (log.filter?.filterSpecifier.case !== "logTypeFilter")
    throw new Error(`access log ${log.name} has no log_type_filter`);
  return log.filter.filterSpecifier.value;
}

/**
 * Envoy's HeaderMutationRules decision for a header (source/extensions/filters/common/mutation_rules/mutation_rules.cc,
 * Checker::isAllowed), as used by ext_authz for headers_to_set. Kept here so the rules in the file are judged by
 * what Envoy would do with them, not by their spelling.
 */
function mutationAllowed(rules: HeaderMutationRules, op: "set" | "append" | "remove", header: string): boolean {
  const name = header.toLowerCase();
  if (op === "remove" && (name.startsWith(":") || name === "host")) return false;
  if (rules.disallowExpression && new RegExp(rules.disallowExpression.regex).test(name)) return false;
  if (rules.allowExpression && new RegExp(rules.allowExpression.regex).test(name)) return true;
  if (rules.disallowAll === true) return false;
  if (rules.allowAllRouting !== true && ["host", ":authority", ":method", ":scheme"].includes(name)) return false;
  if (name.startsWith(":") && (op === "append" || rules.disallowSystem === true)) return false;
  if (rules.allowEnvoy !== true && name.startsWith("x-envoy")) return false;
  return true;
}

/** Removes exactly what may differ between production and local, so the rest can be compared whole. */
function withoutDeploymentDetails(json: JsonValue): JsonValue {
  const copy = structuredClone(json) as JsonObject;
  const sr = copy["staticResources"] as JsonObject;
  const hcm = (
    ((sr["listeners"] as JsonObject[])[0]!["filterChains"] as JsonObject[])[0]!["filters"] as JsonObject[]
  )[0]!["typedConfig"] as JsonObject;
  for (const filter of hcm["httpFilters"] as JsonObject[]) {
    const cfg = filter["typedConfig"] as JsonObject;
    if (cfg["@type"] === "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua") {
      delete (cfg["defaultSourceCode"] as JsonObject)["filename"];
    }
  }
  for (const log of hcm["accessLog"] as JsonObject[]) {
    const cfg = log["typedConfig"] as JsonObject;
    if (cfg["@type"] === "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog")
      delete cfg["path"];
  }
  for (const cluster of sr["clusters"] as JsonObject[]) {
    delete cluster["loadAssignment"];
    // Production speaks TLS to providers and mTLS to the control plane; local development neither.
    delete cluster["transportSocket"];
    if (String(cluster["name"]).startsWith("provider_")) {
      const options = (cluster["typedExtensionProtocolOptions"] as JsonObject)[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
      ] as JsonObject;
      delete options["autoConfig"];
      delete options["explicitHttpConfig"];
    }
  }
  return copy;
}

const files = readdirSync(envoyDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("envoy/*.yaml", () => {
  it("are exactly the production and local bootstraps", () => {
    expect(files).toEqual(Object.keys(variants).sort());
  });

  describe("strict parsing", () => {
    const base = readYaml("envoy.yaml") as JsonObject;
    const fresh = (): JsonObject => structuredClone(base);
    const firstHttpFilter = (doc: JsonObject): JsonObject => {
      const sr = doc["static_resources"] as JsonObject;
      const hcm = (
        ((sr["listeners"] as JsonObject[])[0]!["filter_chains"] as JsonObject[])[0]!["filters"] as JsonObject[]
      )[0]!["typed_config"] as JsonObject;
      return (hcm["http_filters"] as JsonObject[])[0]!;
    };

    it("rejects an unknown field inside a typed_config", () => {
      const doc = fresh();
      (firstHttpFilter(doc)["typed_config"] as JsonObject)["failure_mode_alow"] = true;
      expect(() => parseBootstrap(doc)).toThrow(
        'cannot decode message envoy.extensions.filters.http.ext_authz.v3.ExtAuthz from JSON: key "failure_mode_alow" is unknown',
      );
    });

    it("rejects an unknown field at the top level", () => {
      const doc = { ...structuredClone(base), static_resourcez: {} };
      expect(() => parseBootstrap(doc)).toThrow(
        'cannot decode message envoy.config.bootstrap.v3.Bootstrap from JSON: key "static_resourcez" is unknown',
      );
    });

    it("rejects a typed_config whose @type is not a known extension", () => {
      const doc = fresh();
      (firstHttpFilter(doc)["typed_config"] as JsonObject)["@type"] =
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzz";
      expect(() => parseBootstrap(doc)).toThrow(
        "cannot decode message google.protobuf.Any from JSON: type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzz is not in the type registry",
      );
    });

    it("accepts the unmodified file (the failures above are caused by the edits)", () => {
      expect(() => parseBootstrap(fresh())).not.toThrow();
    });
  });

  for (const file of Object.keys(variants)) {
    const expected = variants[file]!;
    describe(file, () => {
      const bootstrap = parseBootstrap(readYaml(file));
      const hcm = hcmOf(bootstrap);
      const clusters = new Map((bootstrap.staticResources?.clusters ?? []).map((c) => [c.name, c]));

      it("listens publicly on 0.0.0.0:10000 and keeps admin on 127.0.0.1:9901", () => {
        const listeners = bootstrap.staticResources?.listeners ?? [];
        expect(listeners).toHaveLength(1);
        expect(hostPort(listeners[0]!.address)).toBe("0.0.0.0:10000");
        expect(listeners[0]!.filterChains).toHaveLength(1);
        expect(listeners[0]!.filterChains[0]!.filters).toHaveLength(1);
        expect(hostPort(bootstrap.admin?.address)).toBe("127.0.0.1:9901");
      });

      it("configures the connection manager for an edge with minute-long streams", () => {
        expect(hcm.useRemoteAddress).toBe(true);
        expect(hcm.generateRequestId).toBe(true);
        expect(hcm.serverName).toBe("tollgate");
        expect(seconds(hcm.streamIdleTimeout)).toBeGreaterThanOrEqual(120);
        expect(seconds(hcm.streamIdleTimeout)).toBeLessThanOrEqual(600);
        expect(hcm.requestTimeout).toBeDefined();
        expect(seconds(hcm.requestTimeout)).toBe(0);
        expect(hcm.commonHttpProtocolOptions?.maxStreamDuration).toBeUndefined();
      });

      it("runs ext_authz, then the usage Lua filter, then the router", () => {
        expect(hcm.httpFilters.map((f) => [f.name, typedConfig(f.configType).typeUrl])).toEqual([
          ["envoy.filters.http.ext_authz", "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"],
          ["envoy.filters.http.lua", "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"],
          ["envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"],
        ]);
        expect(hcm.httpFilters.every((f) => !f.isOptional && !f.disabled)).toBe(true);
      });

      describe("ext_authz", () => {
        const authz = anyUnpack(typedConfig(hcm.httpFilters[0]!.configType), ExtAuthzSchema)!;

        it("calls tollgate_authz over gRPC (v3) with a short deadline", () => {
          expect(authz.services.case).toBe("grpcService");
          const grpc = authz.services.value as GrpcService;
          expect(envoyGrpcCluster(grpc)).toBe("tollgate_authz");
          expect(authz.transportApiVersion).toBe(ApiVersion.V3);
          expect(seconds(grpc.timeout)).toBeGreaterThan(0);
          expect(seconds(grpc.timeout)).toBeLessThanOrEqual(2);
        });

        it("fails closed with 503 and re-routes after authz", () => {
          expect(authz.failureModeAllow).toBe(false);
          expect(authz.failureModeAllowHeaderAdd).toBe(false);
          expect(authz.statusOnError?.code).toBe(503);
          expect(authz.clearRouteCache).toBe(true);
          expect(authz.filterEnabled).toBeUndefined();
          expect(authz.filterEnabledMetadata).toBeUndefined();
          expect(authz.enableDynamicMetadataIngestion).not.toBe(false);
        });

        it("sends the request body (model, stream, max_tokens) as bytes", () => {
          expect(authz.withRequestBody).toMatchObject({
            maxRequestBytes: 1048576,
            allowPartialMessage: true,
            packAsBytes: true,
          });
        });

        it("lets the Authorization header reach authz", () => {
          // For a gRPC service every header is sent unless allowed_headers is set; if it is, it must match these.
          const patterns = authz.allowedHeaders?.patterns;
          if (patterns !== undefined) {
            const exact = patterns.map((p) => (p.matchPattern.case === "exact" ? p.matchPattern.value : undefined));
            expect(exact).toContain("authorization");
            expect(exact).toContain("content-type");
            // Authz strips client x-tollgate-* headers only if it sees them.
            const prefixes = patterns.map((p) => (p.matchPattern.case === "prefix" ? p.matchPattern.value : undefined));
            expect(prefixes).toContain("x-tollgate-");
          }
          const disallowed = authz.disallowedHeaders?.patterns ?? [];
          expect(disallowed.filter((p) => p.matchPattern.value === "authorization")).toEqual([]);
          // Authz reads CheckRequest.attributes.request.http.headers, not header_map.
          expect(authz.encodeRawHeaders).toBe(false);
        });

        it("spells out every header mutation policy", () => {
          const rules = authz.decoderHeaderMutationRules;
          expect(rules).toBeDefined();
          expect(toJson(HeaderMutationRulesSchema, rules!)).toEqual({
            allowAllRouting: false,
            allowEnvoy: false,
            disallowSystem: false,
            disallowAll: false,
            disallowIsError: true,
          });
        });

        it("honours the :path rewrite and the tollgate headers set by authz, and nothing routing-critical", () => {
          const rules = authz.decoderHeaderMutationRules ?? create(HeaderMutationRulesSchema);
          for (const header of authzMutatedHeaders) expect(mutationAllowed(rules, "set", header), header).toBe(true);
          for (const header of ["host", ":authority", ":method", ":scheme", "x-envoy-original-path"]) {
            expect(mutationAllowed(rules, "set", header), header).toBe(false);
          }
        });
      });

      it(`loads the usage filter from ${expected.lua}`, () => {
        const lua = anyUnpack(typedConfig(hcm.httpFilters[1]!.configType), LuaSchema)!;
        expect(lua.inlineCode).toBe("");
        expect(lua.defaultSourceCode?.specifier).toEqual({ case: "filename", value: expected.lua });
      });

      it("keeps x-envoy-* headers away from providers", () => {
        const router = anyUnpack(typedConfig(hcm.httpFilters[2]!.configType), RouterSchema)!;
        expect(router.suppressEnvoyHeaders).toBe(true);
      });

      describe("routes", () => {
        const routes = routesOf(hcm);

        it("route each provider header value to its cluster, in front of a catch-all", () => {
          expect(routes.map((r) => r.name)).toEqual([...Object.keys(providers), "no_route"]);
        });

        for (const [provider] of Object.entries(providers)) {
          it(`${provider}: exact x-tollgate-provider match, no path rewrite, no stream deadline, header stripped`, () => {
            const route = routes.find((r) => r.name === provider)!;
            expect(route.match?.pathSpecifier).toEqual({ case: "prefix", value: "/" });
            expect(route.match?.headers).toHaveLength(1);
            const header = route.match!.headers[0]!;
            expect(header.name).toBe("x-tollgate-provider");
            expect(header.invertMatch).toBe(false);
            expect(header.headerMatchSpecifier.case).toBe("stringMatch");
            const matcher = header.headerMatchSpecifier.value as {
              matchPattern: { case: string; value: unknown };
              ignoreCase: boolean;
            };
            expect(matcher.matchPattern).toEqual({ case: "exact", value: provider });
            expect(matcher.ignoreCase).toBe(false);

            const action = routeAction(route);
            expect(action.clusterSpecifier).toEqual({ case: "cluster", value: `provider_${provider}` });
            expect(action.prefixRewrite).toBe("");
            expect(action.regexRewrite).toBeUndefined();
            expect(action.pathRewritePolicy).toBeUndefined();
            expect(action.hostRewriteSpecifier.case).toBe("autoHostRewrite");
            expect((action.hostRewriteSpecifier.value as { value: boolean }).value).toBe(true);
            const timeout = seconds(action.timeout);
            expect(timeout === 0 || (timeout !== undefined && timeout >= 600)).toBe(true);
            expect(action.maxStreamDuration).toBeUndefined();
            // Retries only before the provider can have seen the request (envoy-render.test.ts has the details).
            expect(action.retryPolicy?.retryOn.split(",").sort()).toEqual([
              "connect-failure",
              "refused-stream",
              "reset-before-request",
            ]);
            expect(action.retryPolicy?.perTryTimeout).toBeUndefined();

            expect(route.requestHeadersToRemove).toContain("x-tollgate-provider");
          });
        }

        it("answers anything unrouted with a 503 OpenAI-shaped JSON error", () => {
          const route = routes.at(-1)!;
          expect(route.match?.pathSpecifier).toEqual({ case: "prefix", value: "/" });
          expect(route.match?.headers).toEqual([]);
          expect(route.action.case).toBe("directResponse");
          const direct = route.action.value as {
            status: number;
            body?: { specifier: { case: string; value: unknown } };
          };
          expect(direct.status).toBe(503);
          expect(direct.body?.specifier.case).toBe("inlineString");
          expect(JSON.parse(String(direct.body?.specifier.value))).toEqual(noRouteBody);
          expect(route.responseHeadersToAdd.map((h) => [h.header?.key, h.header?.value])).toEqual([
            ["content-type", "application/json"],
          ]);
        });

        it("only reference clusters that exist", () => {
          for (const route of routes.filter((r) => r.action.case === "route")) {
            expect(clusters.has(String(routeAction(route).clusterSpecifier.value)), route.name).toBe(true);
          }
        });
      });

      describe("what a provider receives", () => {
        it("the virtual host removes the client's address and account-selecting headers", () => {
          if (hcm.routeSpecifier.case !== "routeConfig") throw new Error("expected an inline route_config");
          const vhost = hcm.routeSpecifier.value.virtualHosts[0]!;
          expect([...vhost.requestHeadersToRemove].sort()).toEqual([...PROVIDER_REMOVED_REQUEST_HEADERS].sort());
        });
        it("the virtual host sets accept-encoding: identity, so providers answer uncompressed for the usage filter", () => {
          if (hcm.routeSpecifier.case !== "routeConfig") throw new Error("expected an inline route_config");
          const vhost = hcm.routeSpecifier.value.virtualHosts[0]!;
          expect(vhost.requestHeadersToAdd.map((h) => [h.header?.key, h.header?.value, h.appendAction])).toEqual(
            Object.entries(PROVIDER_SET_REQUEST_HEADERS).map(([k, v]) => [
              k,
              v,
              HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            ]),
          );
          expect(PROVIDER_SET_REQUEST_HEADERS["accept-encoding"]).toBe("identity");
          // Routes neither add nor keep a coding of their own.
          for (const route of routesOf(hcm)) {
            expect(route.requestHeadersToAdd.filter((h) => h.header?.key === "accept-encoding")).toEqual([]);
          }
        });
        it("a client's x-request-id and x-forwarded-for are not trusted: Envoy generates the id, the peer is the address", () => {
          expect(hcm.preserveExternalRequestId).toBe(false);
          expect(hcm.useRemoteAddress).toBe(true);
          expect(hcm.xffNumTrustedHops).toBe(0);
        });
        it("no client is internal, so Envoy strips a client's x-envoy-retry-on, -max-retries, -upstream-rq-*-timeout-ms on every version", () => {
          // Without internal_address_config, Envoy before 1.36 counts any RFC 1918 / loopback peer as internal (a
          // load balancer in a VPC, docker's bridge) and then honours those headers from the client: a client could
          // make Envoy send one billed request to the provider many times (retry on 5xx, 1 ms per-try timeouts,
          // hedging). An empty cidr_ranges falls back to RFC 1918 on those versions, so the list must name a range
          // that no peer can have.
          const internal = hcm.internalAddressConfig;
          expect(internal).toBeDefined();
          expect(internal!.unixSockets).toBe(false);
          expect(internal!.cidrRanges.length).toBeGreaterThan(0);
          for (const range of internal!.cidrRanges) {
            expect(`${range.addressPrefix}/${range.prefixLen ?? 0}`).toMatch(/^(0\.0\.0\.0\/32|::\/128)$/);
          }
        });
      });

      describe("local_reply_config: Envoy's own replies are OpenAI-shaped, authz's pass unchanged", () => {
        const raw = readYaml(file) as JsonObject;
        const rawHcm = (
          (
            ((raw["static_resources"] as JsonObject)["listeners"] as JsonObject[])[0]!["filter_chains"] as JsonObject[]
          )[0]!["filters"] as JsonObject[]
        )[0]!["typed_config"] as JsonObject;
        const localReply = compileLocalReply(rawHcm["local_reply_config"]);
        const json = new Map([["content-type", ["application/json"]]]);
        const reply = (
          status: number,
          flags: string[],
          authz: JsonObject = {},
          body = "",
          headers: Map<string, string[]> = new Map(),
        ) => localReply.rewrite({ status, flags, headers, body, metadata: { [AUTHZ_METADATA_NAMESPACE]: authz } });
        const error = (code: string, type: string) => ({
          error: { message: expect.any(String), type, param: null, code },
        });
        const allowed = { [AUTHZ_METADATA_KEYS.decisionId]: "dec-1" };

        it("parses strictly (no top-level body_format: it would rewrite authz's own bodies too)", () => {
          expect(hcm.localReplyConfig).toBeDefined();
          expect(hcm.localReplyConfig!.bodyFormat).toBeUndefined();
        });
        it("authz unreachable or timed out (ext_authz_error: UAEX, status_on_error, no verdict): 503 unavailable + Retry-After", () => {
          const out = reply(503, ["UAEX"]);
          expect(out.status).toBe(503);
          expect(JSON.parse(out.body)).toEqual(error("unavailable", "server_error"));
          expect(out.headers.get("retry-after")).toEqual(["1"]);
          expect(out.headers.get("content-type")).toEqual(["application/json"]);
        });
        it("a refused or invalid header mutation (ext_authz_invalid: UAEX, 500): 500 internal_error", () => {
          const out = reply(500, ["UAEX"], allowed);
          expect(out.status).toBe(500);
          expect(JSON.parse(out.body)).toEqual(error("internal_error", "server_error"));
          expect(out.headers.get("content-type")).toEqual(["application/json"]);
        });
        it("no route (NR): 404 unsupported_endpoint", () => {
          const out = reply(404, ["NR"]);
          expect(out.status).toBe(404);
          expect(JSON.parse(out.body)).toEqual(error("unsupported_endpoint", "invalid_request_error"));
        });
        it("a body over Envoy's buffer (413, no verdict): 413 request_too_large", () => {
          const out = reply(413, [], allowed, "Payload Too Large");
          expect(out.status).toBe(413);
          expect(JSON.parse(out.body)).toEqual(error("request_too_large", "invalid_request_error"));
          expect(out.headers.get("content-type")).toEqual(["application/json"]);
        });
        it("the provider unreachable before a response (UF, UH, UO, UC, retries exhausted URX): 503 unavailable + Retry-After", () => {
          for (const flag of ["UF", "UH", "UO", "UC", "URX"]) {
            const out = reply(503, [flag], allowed, "upstream connect error or disconnect/reset before headers");
            expect(out.status, flag).toBe(503);
            expect(JSON.parse(out.body), flag).toEqual(error("unavailable", "server_error"));
            expect(out.headers.get("retry-after"), flag).toEqual(["1"]);
          }
        });
        it("authz's own verdicts (a verdict in the metadata), the models answer and the no_route body pass unchanged", () => {
          const verdicts: Array<[number, string]> = [
            [503, "unavailable"],
            [413, "request_too_large"],
            [401, "invalid_api_key"],
            [429, "rate_limit_exceeded"],
          ];
          for (const [status, code] of verdicts) {
            const body = JSON.stringify({ error: { message: "m", type: "t", param: null, code } });
            const headers = new Map([...json, ["retry-after", ["7"]]]);
            const out = reply(status, ["UAEX"], { [AUTHZ_METADATA_KEYS.verdict]: code }, body, headers);
            expect(out, code).toEqual({
              status,
              body,
              headers: new Map([...headers, ["content-length", [String(body.length)]]]),
            });
          }
          const models = reply(200, ["UAEX"], {}, '{"object":"list","data":[]}', json);
          expect(models.status).toBe(200);
          expect(models.body).toBe('{"object":"list","data":[]}');
          const noRoute = reply(503, [], {}, JSON.stringify(noRouteBody), json);
          expect(JSON.parse(noRoute.body)).toEqual(noRouteBody);
          expect(noRoute.headers.get("retry-after")).toBeUndefined();
        });
      });

      describe("access logs", () => {
        it("are one gRPC ALS and one JSON file log, both final entries only", () => {
          expect(hcm.accessLog.map((l) => [l.name, typedConfig(l.configType).typeUrl])).toEqual([
            [
              "envoy.access_loggers.http_grpc",
              "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            ],
            ["envoy.access_loggers.file", "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"],
          ]);
          for (const log of hcm.accessLog) {
            expect(logTypes(log), log.name).toMatchObject({ types: [AccessLogType.DownstreamEnd], exclude: false });
          }
        });

        it("streams to tollgate_meter as log `tollgate` (v3, ~1 s batches)", () => {
          const als = anyUnpack(typedConfig(hcm.accessLog[0]!.configType), HttpGrpcAccessLogConfigSchema)!;
          const common = als.commonConfig!;
          expect(common.logName).toBe("tollgate");
          expect(envoyGrpcCluster(common.grpcService)).toBe("tollgate_meter");
          expect(common.transportApiVersion).toBe(ApiVersion.V3);
          expect(seconds(common.bufferFlushInterval)).toBe(1);
        });

        it(`writes exactly the reconcile keys as JSON to ${expected.accessLog}`, () => {
          const file = anyUnpack(typedConfig(hcm.accessLog[1]!.configType), FileAccessLogSchema)!;
          expect(file.path).toBe(expected.accessLog);
          expect(file.accessLogFormat.case).toBe("logFormat");
          const format = file.accessLogFormat.value as { format: { case: string; value: unknown } };
          expect(format.format.case).toBe("jsonFormat");
          expect(format.format.value).toEqual(jsonLogFormat);
          expect(Object.keys(format.format.value as object)).toEqual(Object.keys(jsonLogFormat));
        });
      });

      describe("clusters", () => {
        it("are exactly the control plane and the four providers", () => {
          expect([...clusters.keys()].sort()).toEqual(
            ["tollgate_authz", "tollgate_meter", ...Object.keys(providers).map((p) => `provider_${p}`)].sort(),
          );
          for (const [name, cluster] of clusters) expect(cluster.loadAssignment?.clusterName, name).toBe(name);
        });

        for (const [role, address] of [
          ["tollgate_authz", expected.authz],
          ["tollgate_meter", expected.meter],
        ] as const) {
          it(`${role} is HTTP/2 at ${address} with gRPC health checks`, () => {
            const cluster = clusters.get(role)!;
            expect(clusterEndpoint(cluster)).toBe(address);
            const options = protocolOptions(cluster);
            expect(options.upstreamProtocolOptions.case).toBe("explicitHttpConfig");
            const explicit = options.upstreamProtocolOptions.value as { protocolConfig: { case: string } };
            expect(explicit.protocolConfig.case).toBe("http2ProtocolOptions");
            expect(cluster.healthChecks).toHaveLength(1);
            const hc = cluster.healthChecks[0]!;
            expect(hc.healthChecker.case).toBe("grpcHealthCheck");
            expect((hc.healthChecker.value as { serviceName: string }).serviceName).toBe("");
            expect(seconds(hc.timeout)).toBeGreaterThan(0);
            expect(seconds(hc.interval)).toBeGreaterThan(0);
            expect(hc.healthyThreshold).toBeGreaterThan(0);
            expect(hc.unhealthyThreshold).toBeGreaterThan(0);
          });
        }

        for (const [role, address] of [
          ["tollgate_authz", expected.authz],
          ["tollgate_meter", expected.meter],
        ] as const) {
          const host = address.split(":")[0]!;
          if (expected.variant === "production") {
            it(`${role} is reached over mutual TLS: Envoy's client certificate, ${host}'s certificate checked against the private CA, ALPN h2`, () => {
              const cluster = clusters.get(role)!;
              expect(cluster.transportSocket?.name).toBe("envoy.transport_sockets.tls");
              const tls = anyUnpack(typedConfig(cluster.transportSocket!.configType), UpstreamTlsContextSchema)!;
              expect(tls.sni).toBe(host);
              const common = tls.commonTlsContext!;
              expect(common.alpnProtocols).toEqual(["h2"]);
              expect(
                common.tlsCertificates.map((c) => [c.certificateChain?.specifier, c.privateKey?.specifier]),
              ).toEqual([
                [
                  { case: "filename", value: "/etc/tollgate/tls/envoy.crt" },
                  { case: "filename", value: "/etc/tollgate/tls/envoy.key" },
                ],
              ]);
              expect(common.validationContextType.case).toBe("validationContext");
              const ctx = common.validationContextType.value as {
                trustedCa?: { specifier: unknown };
                matchTypedSubjectAltNames: { sanType: number; matcher?: { matchPattern: unknown } }[];
              };
              expect(ctx.trustedCa?.specifier).toEqual({ case: "filename", value: "/etc/tollgate/tls/ca.crt" });
              expect(ctx.matchTypedSubjectAltNames.map((m) => [m.sanType, m.matcher?.matchPattern])).toEqual([
                [SubjectAltNameMatcher_SanType.DNS, { case: "exact", value: host }],
              ]);
            });
          } else {
            it(`${role} is plaintext on loopback (tollgate serve without tls.*)`, () => {
              expect(clusters.get(role)!.transportSocket).toBeUndefined();
            });
          }
        }

        for (const [provider, host] of Object.entries(providers)) {
          const upstream =
            expected.variant === "production" ? `${host}:443 over TLS` : "the mock provider over HTTP/1.1";
          it(`provider_${provider} reaches ${upstream}`, () => {
            const cluster = clusters.get(`provider_${provider}`)!;
            expect(cluster.clusterDiscoveryType.case).toBe("type");
            expect([Cluster_DiscoveryType.LOGICAL_DNS, Cluster_DiscoveryType.STRICT_DNS]).toContain(
              cluster.clusterDiscoveryType.value,
            );
            expect(seconds(cluster.connectTimeout)).toBeGreaterThan(0);
            expect(seconds(cluster.connectTimeout)).toBeLessThanOrEqual(10);
            const options = protocolOptions(cluster);
            if (expected.variant === "production") {
              expect(clusterEndpoint(cluster)).toBe(`${host}:443`);
              expect(cluster.transportSocket?.name).toBe("envoy.transport_sockets.tls");
              const tls = anyUnpack(typedConfig(cluster.transportSocket!.configType), UpstreamTlsContextSchema)!;
              expect(tls.sni).toBe(host);
              const validation = tls.commonTlsContext?.validationContextType;
              expect(validation?.case).toBe("validationContext");
              const ctx = validation!.value as {
                trustedCa?: { specifier: { case: string } };
                matchTypedSubjectAltNames: { sanType: number; matcher?: { matchPattern: unknown } }[];
              };
              expect(ctx.trustedCa?.specifier.case).toBe("filename");
              expect(ctx.matchTypedSubjectAltNames.map((m) => [m.sanType, m.matcher?.matchPattern])).toEqual([
                [SubjectAltNameMatcher_SanType.DNS, { case: "exact", value: host }],
              ]);
              expect(options.upstreamProtocolOptions.case).toBe("autoConfig");
            } else {
              expect(clusterEndpoint(cluster)).toBe("127.0.0.1:9100");
              expect(cluster.transportSocket).toBeUndefined();
              expect(options.upstreamProtocolOptions.case).toBe("explicitHttpConfig");
              const explicit = options.upstreamProtocolOptions.value as { protocolConfig: { case: string } };
              expect(explicit.protocolConfig.case).toBe("httpProtocolOptions");
            }
          });
        }

        it("include every cluster a gRPC service names", () => {
          const authz = anyUnpack(typedConfig(hcm.httpFilters[0]!.configType), ExtAuthzSchema)!;
          const als = anyUnpack(typedConfig(hcm.accessLog[0]!.configType), HttpGrpcAccessLogConfigSchema)!;
          expect(clusters.has(envoyGrpcCluster(authz.services.value as GrpcService))).toBe(true);
          expect(clusters.has(envoyGrpcCluster(als.commonConfig?.grpcService))).toBe(true);
        });
      });
    });
  }

  it("production and local differ only in addresses, TLS, upstream protocol and file paths", () => {
    const [prod, local] = ["envoy.yaml", "envoy.local.yaml"].map((f) =>
      withoutDeploymentDetails(toJson(BootstrapSchema, parseBootstrap(readYaml(f)), { registry })),
    );
    expect(local).toEqual(prod);
  });

  it("the structural comparison notices drift", () => {
    const prod = readYaml("envoy.yaml") as JsonObject;
    const drifted = structuredClone(prod);
    const clusters = (drifted["static_resources"] as JsonObject)["clusters"] as JsonObject[];
    clusters.find((c) => c["name"] === "provider_google")!["connect_timeout"] = "9s";
    const [a, b] = [prod, drifted].map((doc) =>
      withoutDeploymentDetails(toJson(BootstrapSchema, parseBootstrap(doc), { registry })),
    );
    expect(a).not.toEqual(b);
  });
});
