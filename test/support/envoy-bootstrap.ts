// Strict parsing of an Envoy bootstrap the way Envoy's loader would reject it: protobuf JSON against the real Envoy
// protos (test/gen, never shipped), unknown fields and unknown typed_config @types failing. Shared by the contract
// tests of the committed files and of `tollgate envoy render`'s output.
import { fromJson, createRegistry, type JsonValue } from "@bufbuild/protobuf";
import { parse } from "yaml";
import {
  BootstrapSchema,
  file_envoy_config_bootstrap_v3_bootstrap,
  type Bootstrap,
} from "../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { file_envoy_extensions_access_loggers_file_v3_file } from "../gen/envoy/extensions/access_loggers/file/v3/file_pb.js";
import { file_envoy_extensions_access_loggers_grpc_v3_als } from "../gen/envoy/extensions/access_loggers/grpc/v3/als_pb.js";
import { file_envoy_extensions_filters_http_ext_authz_v3_ext_authz } from "../gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.js";
import { file_envoy_extensions_filters_http_lua_v3_lua } from "../gen/envoy/extensions/filters/http/lua/v3/lua_pb.js";
import { file_envoy_extensions_filters_http_router_v3_router } from "../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import { file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager } from "../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { file_envoy_extensions_transport_sockets_tls_v3_tls } from "../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { file_envoy_extensions_upstreams_http_v3_http_protocol_options } from "../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";

/** Every extension type a rendered config may name in a typed_config; anything else must fail to parse. */
export const envoyRegistry = createRegistry(
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

/** Parses bootstrap JSON strictly (throws on unknown fields and unregistered @types). */
export function parseBootstrapStrict(json: JsonValue): Bootstrap {
  return fromJson(BootstrapSchema, json, { registry: envoyRegistry });
}

/** Parses bootstrap YAML text strictly; YAML duplicate keys fail too. */
export function parseBootstrapYaml(text: string): Bootstrap {
  return parseBootstrapStrict(parse(text, { uniqueKeys: true }) as JsonValue);
}
