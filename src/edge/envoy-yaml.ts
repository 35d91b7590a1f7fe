// What the local edge reads from envoy.local.yaml itself at start-up rather than from copied constants: the
// connection manager's local_reply_config, the provider virtual host's request_headers_to_remove and the provider
// routes (a provider added to the catalogue and re-rendered is routed without code changes). They decide what a
// client or a provider sees and where a request goes, so the edge takes them from the file Envoy runs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { parse } from "yaml";
import { PACKAGE_ROOT } from "../config/config.js";
import { compileLocalReply, type LocalReply } from "./local-reply.js";
import { providerUpstreamsOf } from "./envoy-routes.js";

/** envoy/envoy.local.yaml in this package: the configuration the edge stands in for. */
export const LOCAL_ENVOY_YAML = join(PACKAGE_ROOT, "envoy/envoy.local.yaml");

/** The parts of an Envoy bootstrap the edge applies as read. */
export interface EdgeEnvoyConfig {
  localReply: LocalReply;
  /** The virtual host's `request_headers_to_remove`: dropped before any request goes to a provider. */
  providerRemovedHeaders: readonly string[];
  /** The virtual host's `request_headers_to_add` (name, value, append_action), applied after the removals. */
  providerAddedHeaders: ReadonlyArray<{ name: string; value: string; action: string }>;
  /** Provider id → origin of its cluster, one per x-tollgate-provider route, in route order. */
  providerUpstreams: Readonly<Record<string, string>>;
}

/** Reads and compiles them; a missing part or one the edge cannot apply fails naming the file. */
export function loadEdgeEnvoyConfig(path = LOCAL_ENVOY_YAML): EdgeEnvoyConfig {
  try {
    return edgeEnvoyConfig(parse(readFileSync(path, "utf8")) as JsonValue);
  } catch (error) {
    throw new Error(`${path}: ${(error as Error).message}`);
  }
}

/** The same from an already parsed bootstrap (snake_case, as written). */
export function edgeEnvoyConfig(bootstrap: JsonValue): EdgeEnvoyConfig {
  const listener = at(bootstrap, ["static_resources", "listeners", 0]);
  const hcm = at(listener, ["filter_chains", 0, "filters", 0, "typed_config"]) as JsonObject;
  const vhost = at(hcm, ["route_config", "virtual_hosts", 0]) as JsonObject;
  const removed = (vhost["request_headers_to_remove"] ?? []) as JsonValue[];
  const added = (vhost["request_headers_to_add"] ?? []) as JsonObject[];
  return {
    localReply: compileLocalReply(hcm["local_reply_config"]),
    providerRemovedHeaders: removed.map((h) => String(h).toLowerCase()),
    providerAddedHeaders: added.map((option) => {
      const header = option["header"] as JsonObject;
      return {
        name: String(header["key"]).toLowerCase(),
        value: String(header["value"] ?? ""),
        action: String(option["append_action"] ?? "APPEND_IF_EXISTS_OR_ADD"),
      };
    }),
    providerUpstreams: providerUpstreamsOf(bootstrap),
  };
}

function at(value: JsonValue, path: ReadonlyArray<string | number>): JsonValue {
  let v: JsonValue | undefined = value;
  for (const step of path) {
    v = v !== null && typeof v === "object" ? (v as Record<string, JsonValue>)[step] : undefined;
    if (v === undefined) throw new Error(`no ${path.join(".")}`);
  }
  return v;
}
