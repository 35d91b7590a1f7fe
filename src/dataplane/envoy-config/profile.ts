// What `tollgate envoy render` renders: the catalogue's providers and the config's roles, for the production
// deployment (docker-compose service names, mTLS, providers over the internet) or for local development (the roles
// where `tollgate serve` listens, every provider on the mock provider).
import { readCatalogueFile } from "../../config/catalogue-file.js";
import { ConfigError, edgeTlsFor, splitListen, tlsFor, type Config } from "../../config/config.js";
import {
  renderEnvoyConfig,
  type EnvoyRenderInput,
  type ProviderTarget,
  type RoleTarget,
  type UpstreamEndpoint,
} from "./render.js";
import { checkEnvoyConfig } from "./self-check.js";

/** Where the local profile sends every provider: `tollgate serve --mock-providers`' mock provider. */
export const LOCAL_MOCK_UPSTREAM = "http://127.0.0.1:9100";
/** Where the production profile finds Envoy's client certificate (envoy.crt, envoy.key) and the private CA (ca.crt). */
export const PRODUCTION_TLS_DIR = "/etc/tollgate/tls";

/** Options of one render; only profile and config are required. */
export interface EnvoyRenderOptions {
  profile: "production" | "local";
  config: Config;
  /** The catalogue whose providers are rendered (default: config catalogue.file). */
  catalogueFile?: string;
  /** Overrides "host:port" of authz / the meter as Envoy dials them. */
  authzAddress?: string;
  meterAddress?: string;
  /** local: the origin every provider cluster reaches (default LOCAL_MOCK_UPSTREAM). */
  mockUpstream?: string;
  /** production: the directory of envoy.crt, envoy.key and ca.crt inside Envoy's container. */
  tlsDir?: string;
  /** The provider ids the gateway serves (its database): only these are rendered, each needing the file's upstream. */
  servedProviders?: readonly string[];
  /** Told about catalogue-file providers left out because the database does not serve them. */
  warn?: (message: string) => void;
}

/** Parses an upstream origin ("https://host[:port]", "http://host[:port]") into the endpoint a cluster reaches. */
export function upstreamEndpoint(origin: string): UpstreamEndpoint {
  const url = new URL(origin);
  const tls = url.protocol === "https:";
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port === "" ? (tls ? 443 : 80) : Number(url.port),
    tls,
  };
}

/** The render input for `options`; a provider without an upstream, or an unusable address, is a ConfigError. */
export function envoyRenderInput(options: EnvoyRenderOptions): EnvoyRenderInput {
  const { config, profile } = options;
  const file = options.catalogueFile ?? config.catalogue.file;
  const catalogue = readCatalogueFile(file);
  const served = options.servedProviders === undefined ? undefined : new Set(options.servedProviders);
  for (const id of served ?? []) {
    if (!catalogue.providers.some((p) => p.id === id))
      throw new ConfigError(
        `envoy render: provider "${id}" is in the database but the catalogue file gives it no upstream (add it to ${file})`,
      );
  }
  const declared = catalogue.providers.map((p, i) => ({ p, i }));
  const rendered = declared.filter(({ p }) => {
    if (served === undefined || served.has(p.id)) return true;
    options.warn?.(`envoy render: provider "${p.id}" is not in the database, so authz never routes to it: left out`);
    return false;
  });
  const providers: ProviderTarget[] = rendered.map(({ p, i }) => {
    if (p.upstream === undefined) {
      throw new ConfigError(
        `catalogue: providers.${i}.upstream: required to render Envoy's cluster for provider "${p.id}" (in ${file})`,
      );
    }
    const origin = profile === "local" ? (options.mockUpstream ?? LOCAL_MOCK_UPSTREAM) : p.upstream;
    return { id: p.id, endpoint: upstreamEndpoint(origin) };
  });
  return profile === "production"
    ? {
        profile,
        providers,
        authz: productionRole(options, "authz"),
        meter: productionRole(options, "meter"),
        luaPath: "/etc/tollgate/usage.lua",
        accessLogPath: "/var/log/tollgate/access.json",
      }
    : {
        profile,
        providers,
        authz: localRole(options, "authz"),
        meter: localRole(options, "meter"),
        luaPath: "envoy/usage.lua",
        accessLogPath: "/tmp/tollgate-envoy-access.json",
      };
}

/** Renders `options` and runs the structural self-check on the text before anyone writes it. */
export function renderEnvoy(options: EnvoyRenderOptions): string {
  const text = renderEnvoyConfig(envoyRenderInput(options));
  checkEnvoyConfig(text);
  return text;
}

function address(text: string, flag: string): { host: string; port: number } {
  const { host, port } = splitListen(text);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65_535 || !/^[A-Za-z0-9.:-]+$/.test(host))
    throw new ConfigError(`envoy render: ${flag}: expected "host:port", got "${text}"`);
  return { host, port };
}

/**
 * Production: the role's docker-compose service name on its configured port, over mTLS with the certificates
 * mounted in Envoy's container, unless tls.allow_plaintext says the network (a mesh) enforces mTLS instead.
 */
function productionRole(options: EnvoyRenderOptions, role: "authz" | "meter"): RoleTarget {
  const { config } = options;
  const given = role === "authz" ? options.authzAddress : options.meterAddress;
  const { host, port } = given
    ? address(given, `--${role}`)
    : { host: role, port: splitListen(config[role].listen).port };
  if (config.tls.allow_plaintext && !tlsFor(config, role)) return { host, port };
  const dir = (options.tlsDir ?? PRODUCTION_TLS_DIR).replace(/\/+$/, "");
  return {
    host,
    port,
    tls: { certFile: `${dir}/envoy.crt`, keyFile: `${dir}/envoy.key`, caFile: `${dir}/ca.crt`, serverName: host },
  };
}

/**
 * Local: where `tollgate serve` listens (a wildcard listen address is dialled on loopback); mTLS when the role serves
 * it (tls.*), presenting the same certificate the local edge would (tls.edge).
 */
function localRole(options: EnvoyRenderOptions, role: "authz" | "meter"): RoleTarget {
  const { config } = options;
  const given = role === "authz" ? options.authzAddress : options.meterAddress;
  const listen = address(given ?? config[role].listen, given ? `--${role}` : `${role}.listen`);
  const host = listen.host === "0.0.0.0" || listen.host === "::" ? "127.0.0.1" : listen.host;
  if (!tlsFor(config, role)) return { host, port: listen.port };
  if (!config.tls.edge.cert_file || !config.tls.edge.key_file) {
    throw new ConfigError(
      `config: tls.edge.cert_file: required to render --local while ${role} serves mTLS (tls.*): Envoy presents tls.edge's certificate and key, as the local edge does`,
    );
  }
  const client = edgeTlsFor(config, role)!;
  return {
    host,
    port: listen.port,
    tls: {
      certFile: client.certFile,
      keyFile: client.keyFile,
      caFile: client.caFile,
      serverName: client.serverName ?? host,
    },
  };
}
