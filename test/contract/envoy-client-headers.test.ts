// A client must never make Envoy repeat a request to a provider or change its timeouts, nor tell authz anything
// as if Envoy had said it. Envoy's router obeys x-envoy-* request headers (retries, hedging, timeouts, stream
// duration); its connection manager strips most of them, but only from requests it counts as external, and before
// Envoy 1.33 every RFC 1918 peer counted as internal, also when internal_address_config lists no cidr_ranges (an
// empty list falls back to RFC 1918 there). So both rendered bootstraps, parsed strictly against Envoy's protos, must
// count no peer as internal with a non-empty list, remove every control header at the connection manager
// (internal_only_headers: before any filter) and again at the provider virtual host, and let none reach authz.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { createRegistry, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  BootstrapSchema,
  file_envoy_config_bootstrap_v3_bootstrap,
} from "../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import type { CidrRange } from "../gen/envoy/config/core/v3/address_pb.js";
import { file_envoy_extensions_access_loggers_file_v3_file } from "../gen/envoy/extensions/access_loggers/file/v3/file_pb.js";
import { file_envoy_extensions_access_loggers_grpc_v3_als } from "../gen/envoy/extensions/access_loggers/grpc/v3/als_pb.js";
import {
  ExtAuthzSchema,
  file_envoy_extensions_filters_http_ext_authz_v3_ext_authz,
} from "../gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.js";
import { file_envoy_extensions_filters_http_lua_v3_lua } from "../gen/envoy/extensions/filters/http/lua/v3/lua_pb.js";
import { file_envoy_extensions_filters_http_router_v3_router } from "../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import {
  HttpConnectionManagerSchema,
  file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager,
} from "../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { file_envoy_extensions_transport_sockets_tls_v3_tls } from "../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { file_envoy_extensions_upstreams_http_v3_http_protocol_options } from "../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { ENVOY_CONTROL_REQUEST_HEADERS, PARTIAL_BODY_HEADER } from "../../src/contract/index.js";
import { SAFE_RETRY_ON } from "../../src/dataplane/envoy-config/render.js";

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

/** Addresses a client's TCP connection can come from: private (RFC 1918, CGNAT, ULA), loopback, link-local, public. */
const CLIENT_PEERS = [
  "10.0.0.1",
  "10.255.255.254",
  "172.16.0.1",
  "172.31.255.254",
  "192.168.1.10",
  "100.64.0.1",
  "127.0.0.1",
  "169.254.1.1",
  "8.8.8.8",
  "203.0.113.9",
  "::1",
  "fd00::1",
  "fe80::1",
  "2001:db8::1",
];

/** The address as a bigint over its family's width (IPv4 32 bits, IPv6 128). */
function toBits(address: string): { family: 4 | 6; value: bigint } {
  const family = isIP(address);
  if (family === 4) return { family, value: address.split(".").reduce((a, o) => (a << 8n) | BigInt(o), 0n) };
  if (family !== 6) throw new Error(`not an IP address: ${address}`);
  const [head, tail = ""] = address.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = address.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return { family, value: groups.reduce((a, g) => (a << 16n) | BigInt(`0x${g}`), 0n) };
}

function inRange(address: string, range: CidrRange): boolean {
  const a = toBits(address);
  const p = toBits(range.addressPrefix);
  if (a.family !== p.family) return false;
  const width = a.family === 4 ? 32n : 128n;
  const shift = width - BigInt(range.prefixLen ?? 0);
  return a.value >> shift === p.value >> shift;
}

for (const file of ["envoy.yaml", "envoy.local.yaml"]) {
  describe(`envoy/${file}: nothing client-sent steers Envoy`, () => {
    const text = readFileSync(join(import.meta.dirname, "../../envoy", file), "utf8");
    const bootstrap = fromJson(BootstrapSchema, parse(text) as JsonValue, { registry });
    const filter = bootstrap.staticResources!.listeners[0]!.filterChains[0]!.filters[0]!;
    if (filter.configType.case !== "typedConfig") throw new Error("expected typed_config");
    const hcm = anyUnpack(filter.configType.value, HttpConnectionManagerSchema)!;
    if (hcm.routeSpecifier.case !== "routeConfig") throw new Error("expected an inline route_config");
    const routeConfig = hcm.routeSpecifier.value;

    it("takes the client address from the TCP peer and counts no peer as internal, on every Envoy >= 1.31", () => {
      expect(hcm.useRemoteAddress).toBe(true);
      expect(hcm.xffNumTrustedHops).toBe(0);
      const internal = hcm.internalAddressConfig;
      expect(internal, "internal_address_config is unset: Envoy < 1.33 trusts RFC 1918 peers").toBeDefined();
      expect(internal!.unixSockets).toBe(false);
      // An empty list means "RFC 1918 / RFC 4193" in Envoy < 1.33 (InternalAddressConfig::isInternalAddress falls
      // back to Network::Utility::isInternalAddress when cidr_ranges is empty): it must hold a range.
      expect(internal!.cidrRanges.length).toBeGreaterThan(0);
      for (const peer of CLIENT_PEERS) {
        expect(
          internal!.cidrRanges.some((r) => inRange(peer, r)),
          `${peer} counts as internal`,
        ).toBe(false);
      }
      // Each range is one address no TCP peer can hold (unspecified or limited broadcast).
      for (const r of internal!.cidrRanges) {
        expect(["0.0.0.0/32", "255.255.255.255/32", "::/128"]).toContain(`${r.addressPrefix}/${r.prefixLen}`);
      }
    });

    it("removes every Envoy control header at the connection manager, before any filter (internal_only_headers)", () => {
      expect([...routeConfig.internalOnlyHeaders].sort()).toEqual([...ENVOY_CONTROL_REQUEST_HEADERS].sort());
      for (const name of [
        "x-envoy-retry-on",
        "x-envoy-retry-grpc-on",
        "x-envoy-max-retries",
        "x-envoy-hedge-on-per-try-timeout",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-stream-duration-ms",
        PARTIAL_BODY_HEADER,
      ]) {
        expect(routeConfig.internalOnlyHeaders, name).toContain(name);
      }
    });

    it("removes them again at the provider virtual host (the router reads retry headers after that removal)", () => {
      const removed = routeConfig.virtualHosts[0]!.requestHeadersToRemove;
      for (const name of ENVOY_CONTROL_REQUEST_HEADERS) expect(removed, name).toContain(name);
    });

    it("lets no x-envoy-* header reach authz through allowed_headers", () => {
      const authzFilter = hcm.httpFilters.find((f) => f.name === "envoy.filters.http.ext_authz")!;
      if (authzFilter.configType.case !== "typedConfig") throw new Error("expected typed_config");
      const authz = anyUnpack(authzFilter.configType.value, ExtAuthzSchema)!;
      const patterns = authz.allowedHeaders?.patterns ?? [];
      expect(patterns.length).toBeGreaterThan(0); // unset would send every header
      for (const name of [...ENVOY_CONTROL_REQUEST_HEADERS, "x-envoy-internal", "x-envoy-anything"]) {
        const matched = patterns.some(
          ({ matchPattern: m }) =>
            m.case === "exact"
              ? m.value === name
              : m.case === "prefix"
                ? name.startsWith(m.value)
                : m.case !== undefined /* any other matcher kind counts as a match: fail safe */,
        );
        expect(matched, name).toBe(false);
      }
    });

    it("retries only where no provider saw the request, with no per-try timeout or hedging", () => {
      const routes = routeConfig.virtualHosts[0]!.routes.filter((r) => r.action.case === "route");
      expect(routes.length).toBeGreaterThan(0);
      for (const r of routes) {
        if (r.action.case !== "route") continue;
        const policy = r.action.value.retryPolicy!;
        expect(policy.retryOn.split(",").sort(), r.name).toEqual([...SAFE_RETRY_ON].sort());
        expect(policy.perTryTimeout, r.name).toBeUndefined();
        expect(policy.perTryIdleTimeout, r.name).toBeUndefined();
        expect(policy.retriableStatusCodes, r.name).toEqual([]);
        expect(r.action.value.hedgePolicy, r.name).toBeUndefined();
        expect(routeConfig.virtualHosts[0]!.hedgePolicy).toBeUndefined();
      }
    });
  });
}
