// The edge's copy of envoy.local.yaml (src/edge/envoy-contract.ts) against the YAML itself: if either changes
// without the other, this fails.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { PACKAGE_ROOT } from "../../../src/config/config.js";
import * as contract from "../../../src/edge/envoy-contract.js";
import { edgeEnvoyConfig } from "../../../src/edge/envoy-yaml.js";

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML is walked loosely; a wrong path fails the test anyway
type Any = Record<string, any>;
const bootstrap = parse(readFileSync(join(PACKAGE_ROOT, "envoy/envoy.local.yaml"), "utf8")) as Any;
const listener = bootstrap.static_resources.listeners[0] as Any;
const hcm = listener.filter_chains[0].filters[0].typed_config as Any;
const filter = (name: string) => (hcm.http_filters as Any[]).find((f) => f.name === name)!.typed_config as Any;
const extAuthz = filter("envoy.filters.http.ext_authz");
const fileLog = (hcm.access_log as Any[]).find((l) => l.name === "envoy.access_loggers.file")!.typed_config as Any;
const grpcLog = (hcm.access_log as Any[]).find((l) => l.name === "envoy.access_loggers.http_grpc")!.typed_config as Any;
const routes = hcm.route_config.virtual_hosts[0].routes as Any[];

describe("edge ↔ envoy.local.yaml", () => {
  it("file log: the same json_format keys, operators and order", () => {
    expect(Object.entries(contract.FILE_LOG_FORMAT)).toEqual(Object.entries(fileLog.log_format.json_format));
    expect(contract.LOCAL_FILE_LOG_PATH).toBe(fileLog.path);
  });
  it("ext_authz: allowed headers, body limit, timeout, status on error", () => {
    expect(contract.AUTHZ_ALLOWED_HEADERS).toEqual(extAuthz.allowed_headers.patterns);
    expect(extAuthz.with_request_body).toEqual({
      max_request_bytes: contract.AUTHZ_MAX_REQUEST_BYTES,
      allow_partial_message: true,
      pack_as_bytes: true,
    });
    expect(extAuthz.grpc_service.timeout).toBe(`${contract.AUTHZ_TIMEOUT_MS / 1000}s`);
    expect(extAuthz.failure_mode_allow).toBe(false);
    expect(extAuthz.status_on_error).toEqual({ code: "ServiceUnavailable" });
    expect(contract.AUTHZ_STATUS_ON_ERROR).toBe(503);
  });
  it("routes: one per provider on x-tollgate-provider, internal headers removed, the no_route body", () => {
    const providerRoutes = routes.filter((r) => r.route);
    // The edge routes exactly these providers, to their clusters' endpoints (the mock provider locally).
    expect(edgeEnvoyConfig(bootstrap).providerUpstreams).toEqual(
      Object.fromEntries(providerRoutes.map((r) => [r.match.headers[0].string_match.exact, "http://127.0.0.1:9100"])),
    );
    for (const r of providerRoutes) expect(r.request_headers_to_remove).toEqual(contract.ROUTE_REMOVED_HEADERS);
    expect(routes.find((r) => r.name === "no_route")!.direct_response.body.inline_string).toBe(contract.NO_ROUTE_BODY);
  });
  it("listener buffer, server name and ALS settings", () => {
    expect(listener.per_connection_buffer_limit_bytes).toBe(contract.REQUEST_BUFFER_LIMIT_BYTES);
    expect(hcm.server_name).toBe(contract.SERVER_NAME);
    expect(hcm.stream_idle_timeout).toBe(`${contract.STREAM_IDLE_TIMEOUT_MS / 1000}s`);
    expect(hcm.request_headers_timeout).toBe(`${contract.REQUEST_HEADERS_TIMEOUT_MS / 1000}s`);
    expect(grpcLog.common_config.log_name).toBe(contract.ALS_LOG_NAME);
    expect(grpcLog.common_config.buffer_flush_interval).toBe(`${contract.ALS_FLUSH_INTERVAL_MS / 1000}s`);
  });
});
