// The structural self-check `tollgate envoy render` runs before writing. Envoy's own protos are not shipped (they
// live in test/gen; test/contract/envoy-render.test.ts parses every shape the renderer produces strictly against
// them), so this checks what the renderer's inputs could get wrong and what Tollgate relies on: the YAML reads back,
// only known extension types appear, every name resolves, no route can retry a request a provider has billed, and
// no client can steer Envoy's retries or timeouts through x-envoy-* headers.
import { parse } from "yaml";
import { ENVOY_CONTROL_REQUEST_HEADERS } from "../../contract/index.js";
import { SAFE_RETRY_ON } from "./render.js";

/** The rendered text failed the self-check; the message lists every problem found. */
export class EnvoyConfigError extends Error {
  override name = "EnvoyConfigError";
}

/** The typed_config types the rendered bootstrap may use (the test registry parses each of them strictly). */
export const KNOWN_TYPES: ReadonlySet<string> = new Set(
  [
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    "envoy.extensions.filters.http.lua.v3.Lua",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  ].map((t) => `type.googleapis.com/${t}`),
);

type Node = Record<string, unknown>;
const TOP_LEVEL = new Set(["node", "admin", "static_resources"]);

function isNode(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function list(value: unknown): Node[] {
  return Array.isArray(value) ? value.filter(isNode) : [];
}

function at(node: unknown, ...path: Array<string | number>): unknown {
  let current = node;
  for (const key of path) {
    if (typeof key === "number") current = Array.isArray(current) ? current[key] : undefined;
    else current = isNode(current) ? current[key] : undefined;
  }
  return current;
}

/** Throws an EnvoyConfigError listing every structural problem of a rendered bootstrap; returns when there is none. */
export function checkEnvoyConfig(text: string): void {
  let doc: unknown;
  try {
    doc = parse(text, { uniqueKeys: true });
  } catch (error) {
    throw new EnvoyConfigError(`envoy config self-check: not valid YAML: ${(error as Error).message}`);
  }
  const problems = problemsOf(doc);
  if (problems.length > 0) throw new EnvoyConfigError(`envoy config self-check failed: ${problems.join("; ")}`);
}

function problemsOf(doc: unknown): string[] {
  if (!isNode(doc)) return ["the document is not a mapping"];
  const problems: string[] = [];
  for (const key of Object.keys(doc)) if (!TOP_LEVEL.has(key)) problems.push(`unexpected top-level key "${key}"`);
  walkTypes(doc, "", problems);

  const clusters = list(at(doc, "static_resources", "clusters"));
  const names = new Set<string>();
  for (const cluster of clusters) {
    const name = String(cluster.name);
    if (names.has(name)) problems.push(`cluster "${name}" is defined twice`);
    names.add(name);
    problems.push(...clusterProblems(name, cluster));
  }

  const listeners = list(at(doc, "static_resources", "listeners"));
  if (listeners.length !== 1) problems.push(`expected one listener, found ${listeners.length}`);
  const hcm = at(listeners[0], "filter_chains", 0, "filters", 0, "typed_config");
  problems.push(...clientHeaderProblems(hcm));
  const routes = list(at(hcm, "route_config", "virtual_hosts", 0, "routes"));
  if (routes.length === 0) problems.push("no routes");
  const routed = new Set<string>();
  for (const route of routes) {
    const action = route.route;
    if (!isNode(action)) continue;
    const cluster = String(action.cluster);
    routed.add(cluster);
    if (!names.has(cluster)) problems.push(`route "${route.name}" names cluster "${cluster}", which is not defined`);
    problems.push(...routeProblems(String(route.name), action));
  }
  for (const name of names)
    if (name.startsWith("provider_") && !routed.has(name)) problems.push(`cluster "${name}" has no route`);
  for (const grpc of grpcClusters(doc))
    if (!names.has(grpc)) problems.push(`a gRPC service names cluster "${grpc}", which is not defined`);
  return problems;
}

/** Single addresses no TCP peer can have: the only internal_address_config ranges that trust nobody. */
const NOBODY = new Set(["0.0.0.0/32", "255.255.255.255/32", "::/128"]);

/**
 * Envoy obeys a request's x-envoy-* retry and timeout headers unless it counts the peer as external; with
 * internal_address_config unset or its cidr_ranges empty, Envoy 1.31-1.32 counts RFC 1918 peers as internal. So the
 * list must name only addresses no client can have, and internal_only_headers (removed from external requests before
 * any filter) must hold every control header.
 */
function clientHeaderProblems(hcm: unknown): string[] {
  const problems: string[] = [];
  const internal = at(hcm, "internal_address_config");
  const ranges = Array.isArray(at(internal, "cidr_ranges")) ? (at(internal, "cidr_ranges") as unknown[]) : [];
  if (ranges.length === 0) {
    problems.push(
      "internal_address_config must list only addresses no client can have (unset or empty, Envoy 1.31-1.32 counts RFC 1918 peers as internal and obeys their x-envoy-* retry and timeout headers)",
    );
  }
  for (const range of ranges) {
    const cidr = `${String(at(range, "address_prefix"))}/${String(at(range, "prefix_len") ?? 0)}`;
    if (!NOBODY.has(cidr))
      problems.push(
        `internal_address_config counts ${cidr} as internal: Envoy would obey x-envoy-* retry and timeout headers from it`,
      );
  }
  if (at(internal, "unix_sockets") === true) problems.push("internal_address_config counts unix sockets as internal");
  const stripped = at(hcm, "route_config", "internal_only_headers");
  const names = new Set(Array.isArray(stripped) ? stripped.map((h) => String(h).toLowerCase()) : []);
  for (const header of ENVOY_CONTROL_REQUEST_HEADERS) {
    if (!names.has(header))
      problems.push(`route_config.internal_only_headers lacks ${header}, which a client could use to steer Envoy`);
  }
  return problems;
}

/** Every "@type" must be one the tests parse strictly; anything else would be unchecked. */
function walkTypes(value: unknown, path: string, problems: string[]): void {
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      walkTypes(item, path ? `${path}.${i}` : String(i), problems);
    });
    return;
  }
  if (!isNode(value)) return;
  const type = value["@type"];
  if (type !== undefined && !KNOWN_TYPES.has(String(type)))
    problems.push(`unexpected typed_config "@type" ${String(type)} at ${path}`);
  for (const [key, child] of Object.entries(value)) walkTypes(child, path ? `${path}.${key}` : key, problems);
}

function grpcClusters(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) grpcClusters(item, found);
  else if (isNode(value)) {
    const grpc = value.envoy_grpc;
    if (isNode(grpc)) found.push(String(grpc.cluster_name));
    for (const child of Object.values(value)) grpcClusters(child, found);
  }
  return found;
}

function clusterProblems(name: string, cluster: Node): string[] {
  const problems: string[] = [];
  const assigned = at(cluster, "load_assignment", "cluster_name");
  if (assigned !== name) problems.push(`cluster "${name}" has load_assignment.cluster_name "${String(assigned)}"`);
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
  const port = at(socket, "port_value");
  if (typeof at(socket, "address") !== "string" || at(socket, "address") === "")
    problems.push(`cluster "${name}" has no endpoint address`);
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65_535)
    problems.push(`cluster "${name}" has no valid endpoint port`);
  const tls = at(cluster, "transport_socket", "typed_config");
  if (tls !== undefined && !isNode(at(tls, "common_tls_context", "validation_context")))
    problems.push(`cluster "${name}" speaks TLS without verifying the peer (no validation_context)`);
  return problems;
}

function routeProblems(name: string, action: Node): string[] {
  const problems: string[] = [];
  if (action.timeout !== "0s") problems.push(`route "${name}" has a response timeout, which would cut long streams`);
  if (action.max_stream_duration !== undefined) problems.push(`route "${name}" limits the stream duration`);
  const retry = action.retry_policy;
  if (retry === undefined) return problems;
  if (!isNode(retry)) return [...problems, `route "${name}" has a malformed retry_policy`];
  for (const trigger of String(retry.retry_on ?? "").split(",")) {
    if (!SAFE_RETRY_ON.includes(trigger.trim()))
      problems.push(`route "${name}" retries on "${trigger}", which may repeat a request the provider already billed`);
  }
  if (retry.per_try_timeout !== undefined || retry.per_try_idle_timeout !== undefined)
    problems.push(`route "${name}" sets per_try_timeout, which would cut a long stream`);
  if (retry.retriable_status_codes !== undefined || retry.retriable_headers !== undefined)
    problems.push(`route "${name}" retries on response status or headers, which come after tokens were spent`);
  return problems;
}
