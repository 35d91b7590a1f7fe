import { migrate, openDatabase } from "../../app/stores.js";
import { startControlPlane, type Role } from "../../app/control-plane.js";
import { createClosers, type Closers } from "../../app/closers.js";
import type { Config } from "../../config/config.js";
import { createLogger, type Logger } from "../../logging.js";
import { createMetrics } from "../../observability/metrics.js";
import { getHeapStatistics } from "node:v8";
import { clampedOldSpaceFloorMb, missingNodeFlags, SERVE_NODE_FLAGS } from "../node-flags.js";
import type { Output } from "../output.js";
import { configFrom, parse, UsageError, type Handler } from "../cli-kit.js";
import { auditDirect, ensureLocalCredential } from "../local-credential.js";

const ROLES: readonly Role[] = ["authz", "meter", "admin"];

/**
 * `tollgate serve`: runs the roles until SIGTERM or SIGINT, then drains. Without --role it also runs a data plane
 * (Envoy when on PATH, else the local development edge) unless --no-data-plane; --mock-providers adds the mock
 * provider on 127.0.0.1:9100 and its credentials, so `npm start` is a working gateway on one machine.
 */
export const serve: Handler = async (args, out) => {
  const { values } = parse(args, {
    role: { type: "string", multiple: true },
    "mock-providers": { type: "boolean" },
    "no-data-plane": { type: "boolean" },
  });
  const roles = (values.role ?? [...ROLES]).flatMap((r) => r.split(","));
  for (const role of roles)
    if (!ROLES.includes(role as Role)) throw new UsageError(`--role must be authz, meter or admin, not "${role}"`);
  const config = configFrom(values);
  const withDataPlane = values.role === undefined && !values["no-data-plane"];
  // Development tools are loaded before anything listens, so a build without them refuses at once.
  const edge = withDataPlane
    ? await developmentTool("the local edge", "edge/data-plane.js", () => import("../../edge/data-plane.js"))
    : undefined;
  const mockProvider =
    values["mock-providers"] && values.role === undefined
      ? await developmentTool(
          "the mock provider",
          "mock-provider/mock-provider.js",
          () => import("../../mock-provider/mock-provider.js"),
        )
      : undefined;
  // Said first, before any log line: which data plane this run will put in front of the roles.
  if (edge) {
    const envoy = edge.findEnvoy();
    out.info(
      `tollgate: data plane: ${envoy ? `Envoy (${envoy}) with envoy/envoy.local.yaml` : "the local edge, a development stand-in for Envoy (no envoy on PATH)"}`,
    );
  }
  // Every line says which process wrote it: the roles are part of the base fields.
  const logger = createLogger({ level: config.log.level, base: { pid: process.pid, role: roles.join(",") } });
  // The control plane, then the mock provider, then the data plane; each registers its closer, so a failure part-way
  // closes what started and a signal closes the data plane first (no request reaches a role that is already
  // draining), then the mock provider, then the control plane (NOT_SERVING, in-flight Checks, the meter's batch).
  const closers = createClosers();
  try {
    await startControlPlaneFor(out, closers, {
      config,
      roles: roles as Role[],
      logger,
      mockProviders: values["mock-providers"],
      missingNodeFlags: missingNodeFlags(process.execArgv),
      oldSpaceFloorMb: clampedOldSpaceFloorMb(getHeapStatistics().heap_size_limit),
    });
    // With --role, --mock-providers only grants the mock credentials: replicas share one mock provider.
    if (mockProvider) {
      const mock = await mockProvider.startMockProvider();
      closers.add("mock provider", () => mock.close());
      out.info(`tollgate: mock provider on ${mock.url} (every provider's credential is mock-<provider>)`);
    }
    // A single-role process is one replica behind a separately run Envoy; only the all-in-one serve brings its own.
    if (edge) {
      const dataPlane = await edge.startDataPlane({
        authzAddress: config.authz.listen,
        meterAddress: config.meter.listen,
        logger,
        config,
      });
      closers.add("data plane", () => dataPlane.close());
      out.info(`tollgate: data plane: ${dataPlane.description}`);
    }
  } catch (error) {
    await closers.closeAll().catch((err: unknown) => logger.warn({ err }, "closing after a failed start failed"));
    throw error;
  }
  await drainOnSignal(out, closers);
};

/**
 * Starts the roles, says where each listens and (admin role) makes sure the local operator credential exists; warns
 * when authz runs without the node flags it wants (`missingNodeFlags`, from node-flags.ts), or with less memory than
 * their floor needs (`oldSpaceFloorMb`, set when V8 lowered it).
 */
async function startControlPlaneFor(
  out: Output,
  closers: Closers,
  options: {
    config: Config;
    roles: Role[];
    logger: Logger;
    mockProviders?: boolean;
    missingNodeFlags: string[];
    oldSpaceFloorMb?: number;
  },
): Promise<void> {
  const { config } = options;
  const metrics = createMetrics({ processMetrics: true });
  const plane = await startControlPlane(config, {
    roles: options.roles,
    logger: options.logger,
    mockProviders: options.mockProviders,
    metrics,
  });
  closers.add("control plane", () => plane.close());
  out.info(
    `tollgate: serving ${options.roles.join(", ")} on ${config.database.url.startsWith("sqlite:") ? `the embedded SQLite store (${config.database.url})` : "PostgreSQL"}`,
  );
  if (plane.authz) out.info(`tollgate: authz (Envoy ext_authz gRPC) on ${config.authz.listen}`);
  if (plane.authz) warnAboutNodeFlags(options.logger, options.missingNodeFlags, options.oldSpaceFloorMb);
  if (plane.metering.server) out.info(`tollgate: meter (Envoy access log gRPC) on ${config.meter.listen}`);
  if (plane.admin) {
    out.info(
      `tollgate: admin (Connect, gRPC, gRPC-Web; reflection) on ${config.admin.listen.replace(/:\d+$/, ":" + plane.admin.port)}`,
    );
    out.info(
      `tollgate: web console on http://${config.admin.listen.replace(/:\d+$/, ":" + plane.admin.port)}/console (sign in with an admin token)`,
    );
    const credential = await ensureLocalCredential(plane.stores.db, config);
    out.info(`tollgate: local operator credential in ${credential} (the CLI on this machine uses it)`);
  }
  if (plane.metricsServer)
    out.info(
      `tollgate: metrics (/metrics, /healthz, /readyz) on ${config.metrics.listen!.replace(/:\d+$/, ":" + plane.metricsServer.port)}`,
    );
}

/** Waits for SIGTERM or SIGINT, then closes everything in reverse start order; a second signal exits at once. */
async function drainOnSignal(out: Output, closers: Closers): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal while draining: the operator wants out now.
        out.info(`tollgate: ${signal} again: exiting without draining`);
        process.exit(1);
      }
      stopping = true;
      out.info(`tollgate: ${signal}: draining`);
      closers.closeAll().then(() => {
        out.info("tollgate: drained");
        // Everything is committed and closed; a stray handle (a half-open client socket) must not keep the process up.
        setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
        resolve();
      }, reject);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

/**
 * Loads a development tool (the local edge, the mock provider): the production image is built without them
 * (Dockerfile), and there asking for one is a usage error that says so, not a stack trace.
 */
async function developmentTool<T>(what: string, module: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code !== "ERR_MODULE_NOT_FOUND" || !e.message.includes(module)) throw error;
    throw new UsageError(
      `${what} is a development tool and this build (the production image) does not include it: run ` +
        "`serve --no-data-plane` or `serve --role ...` behind Envoy (envoy/envoy.yaml), with providers' real credentials " +
        "instead of --mock-providers",
    );
  }
}

/** `tollgate migrate`: brings the schema up to date and exits. */
export const migrateCommand: Handler = async (args, out) => {
  const { values } = parse(args, {});
  const db = await openDatabase(configFrom(values).database.url);
  try {
    const applied = await migrate(db);
    // Bootstrap runs with no admin API (and so no token): the audit log names it as such.
    if (applied.length > 0) await auditDirect(db, "bootstrap", "tollgate.cli/Migrate", { applied: applied.join(",") });
    out.result({ applied }, () => (applied.length ? `applied ${applied.join(", ")}` : "schema is up to date"));
  } finally {
    await db.close();
  }
};

/** The warnings of serve's node flags (README, Operations, "V8 flags for serve"): missing, or their floor lowered. */
function warnAboutNodeFlags(logger: Logger, missing: string[], floorMb: number | undefined): void {
  const why =
    "under a stream of large request bodies authz can fall into back-to-back garbage collections " +
    '(README, Operations, "V8 flags for serve")';
  if (missing.length > 0) {
    const start = `start it as \`node ${SERVE_NODE_FLAGS.join(" ")} dist/cli/main.js serve\``;
    logger.warn({ missing }, `node was started without ${missing.join(" ")}: ${why}; ${start}`);
  } else if (floorMb !== undefined) {
    const lowered = `V8 lowered --initial-old-space-size to ${floorMb} MB, half the old generation's maximum`;
    const fix = "give the process at least 1 GiB of memory, or pass --max-old-space-size=1024";
    logger.warn({ floorMb }, `${lowered} (from this process' memory, or --max-old-space-size): ${why}; ${fix}`);
  }
}
