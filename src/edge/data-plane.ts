import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { edgeTlsFor, PACKAGE_ROOT, tlsFor, type Config } from "../config/config.js";
import type { Logger } from "../logging.js";
import { createEdge, type Edge } from "./edge.js";

/** A running data plane (Envoy child process or the local edge) and the line that says which. */
export interface RunningDataPlane {
  kind: "envoy" | "edge";
  description: string;
  /** The local edge's base URL ("http://127.0.0.1:10000"); absent for Envoy. */
  url?: string;
  close(): Promise<void>;
}

/** Finds `envoy` on PATH: its presence decides between the real data plane and the development edge. */
export function findEnvoy(path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, "envoy");
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** Options for the data plane `tollgate serve` runs in front of its roles. */
export interface DataPlaneOptions {
  authzAddress: string;
  meterAddress: string;
  logger: Logger;
  /** The envoy binary (default: found on PATH); null runs the local edge even when an envoy is on PATH. */
  envoy?: string | null;
  /** The roles' configuration: with tls.* set the local edge reaches them over mTLS with tls.edge's certificate. */
  config?: Config;
  /** The local edge's listener port (default 10000, as envoy.local.yaml's; 0 picks a free one). */
  edgePort?: number;
}

/**
 * Starts the data plane for `tollgate serve`: Envoy with envoy/envoy.local.yaml when an `envoy` binary is on PATH
 * (cwd = repository root, so the relative Lua path resolves), else the local edge in-process on the same
 * addresses. The edge is a development tool; production runs Envoy with envoy/envoy.yaml.
 */
export async function startDataPlane(options: DataPlaneOptions): Promise<RunningDataPlane> {
  const envoy = options.envoy === undefined ? findEnvoy() : options.envoy;
  const { config } = options;
  if (envoy) {
    if (config && (tlsFor(config, "authz") || tlsFor(config, "meter"))) {
      options.logger.warn(
        "envoy/envoy.local.yaml reaches authz and the meter in plaintext, but tls.* makes them require mTLS: run Envoy with a configuration that presents Envoy's client certificate (envoy/envoy.yaml)",
      );
    }
    const child: ChildProcess = spawn(envoy, ["-c", "envoy/envoy.local.yaml", "--disable-hot-restart"], {
      cwd: PACKAGE_ROOT,
      stdio: "inherit",
    });
    child.on("exit", (code, signal) => options.logger.warn({ code, signal }, "envoy exited"));
    return {
      kind: "envoy",
      description: `envoy (${envoy}) with envoy/envoy.local.yaml on 0.0.0.0:10000`,
      close: () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }),
    };
  }
  const edge: Edge = await createEdge({
    authzAddress: options.authzAddress,
    meterAddress: options.meterAddress,
    authzTls: config && edgeTlsFor(config, "authz"),
    meterTls: config && edgeTlsFor(config, "meter"),
    port: options.edgePort,
    logger: options.logger,
  });
  return {
    kind: "edge",
    description: `local edge on 0.0.0.0:${edge.port} (no envoy on PATH; development only)`,
    url: edge.url,
    close: () => edge.close(),
  };
}
