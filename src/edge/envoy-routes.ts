// The local edge routes the way a rendered Envoy bootstrap does: each route on x-tollgate-provider names a cluster,
// and the cluster's endpoint (with or without TLS) is where that provider's requests go. Reading the routes from the
// same YAML Envoy would run keeps a provider added to the catalogue reachable through the edge without code changes.
import { parse } from "yaml";
import { TOLLGATE_HEADERS } from "../contract/index.js";

type Node = Record<string, unknown>;

function isNode(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function at(node: unknown, ...path: Array<string | number>): unknown {
  let current = node;
  for (const key of path) {
    if (typeof key === "number") current = Array.isArray(current) ? current[key] : undefined;
    else current = isNode(current) ? current[key] : undefined;
  }
  return current;
}

function nodes(value: unknown): Node[] {
  return Array.isArray(value) ? value.filter(isNode) : [];
}

/**
 * Provider id → upstream origin ("https://host:port" or "http://host:port"), in route order, from an Envoy bootstrap
 * as `tollgate envoy render` writes it: the edge's `upstreams` option. Throws when a provider route names a cluster
 * without an endpoint.
 */
export function providerUpstreams(bootstrapYaml: string): Record<string, string> {
  return providerUpstreamsOf(parse(bootstrapYaml));
}

/** The same from an already parsed bootstrap (snake_case, as written). */
export function providerUpstreamsOf(doc: unknown): Record<string, string> {
  const clusters = new Map(nodes(at(doc, "static_resources", "clusters")).map((c) => [String(c.name), c]));
  const hcm = at(doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config");
  const upstreams: Record<string, string> = {};
  for (const route of nodes(at(hcm, "route_config", "virtual_hosts", 0, "routes"))) {
    const header = nodes(at(route, "match", "headers")).find((h) => h.name === TOLLGATE_HEADERS.provider);
    const provider = at(header, "string_match", "exact");
    const clusterName = at(route, "route", "cluster");
    if (typeof provider !== "string" || typeof clusterName !== "string") continue;
    const cluster = clusters.get(clusterName);
    const socket = at(
      cluster,
      "load_assignment",
      "endpoints",
      0,
      "lb_endpoints",
      0,
      "endpoint",
      "address",
      "socket_address",
    );
    const host = at(socket, "address");
    const port = at(socket, "port_value");
    if (typeof host !== "string" || typeof port !== "number")
      throw new Error(`envoy config: route "${provider}" names cluster "${clusterName}" without an endpoint`);
    const scheme = at(cluster, "transport_socket") === undefined ? "http" : "https";
    upstreams[provider] = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }
  return upstreams;
}
