import { migrate, openDatabase } from "../../adapters/sql/database.js";
import { startControlPlane, type Role } from "../../app/control-plane.js";
import { findEnvoy, startDataPlane, type RunningDataPlane } from "../../edge/data-plane.js";
import { createLogger } from "../../logging.js";
import { createMetrics } from "../../observability/metrics.js";
import { startMockProvider, type MockProvider } from "../../mock-provider/mock-provider.js";
import { configFrom, parse, UsageError, type Handler } from "../cli-kit.js";

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
  for (const role of roles) if (!ROLES.includes(role as Role)) throw new UsageError(`--role must be authz, meter or admin, not "${role}"`);
  const config = configFrom(values);
  const withDataPlane = values.role === undefined && !values["no-data-plane"];
  // Said first, before any log line: which data plane this run will put in front of the roles.
  if (withDataPlane) {
    const envoy = findEnvoy();
    out.info(`tollgate: data plane: ${envoy ? `Envoy (${envoy}) with envoy/envoy.local.yaml` : "the local edge, a development stand-in for Envoy (no envoy on PATH)"}`);
  }
  // Every line says which process wrote it: the roles are part of the base fields.
  const logger = createLogger({ level: config.log.level, base: { pid: process.pid, role: roles.join(",") } });
  const metrics = createMetrics({ processMetrics: true });
  const plane = await startControlPlane(config, { roles: roles as Role[], logger, mockProviders: values["mock-providers"], metrics });
  out.info(`tollgate: serving ${roles.join(", ")} on ${config.database.url.startsWith("sqlite:") ? `the embedded SQLite store (${config.database.url})` : "PostgreSQL"}`);
  if (plane.authz) out.info(`tollgate: authz (Envoy ext_authz gRPC) on ${config.authz.listen}`);
  if (plane.metering.server) out.info(`tollgate: meter (Envoy access log gRPC) on ${config.meter.listen}`);
  if (plane.admin) out.info(`tollgate: admin (Connect, gRPC, gRPC-Web; reflection) on ${config.admin.listen.replace(/:\d+$/, ":" + plane.admin.port)}`);
  if (plane.metricsServer) out.info(`tollgate: metrics (/metrics, /healthz, /readyz) on ${config.metrics.listen!.replace(/:\d+$/, ":" + plane.metricsServer.port)}`);
  let mock: MockProvider | undefined;
  let dataPlane: RunningDataPlane | undefined;
  try {
    // With --role, --mock-providers only grants the mock credentials: replicas share one mock provider.
    if (values["mock-providers"] && values.role === undefined) {
      mock = await startMockProvider();
      out.info(`tollgate: mock provider on ${mock.url} (every provider's credential is mock-<provider>)`);
    }
    // A single-role process is one replica behind a separately run Envoy; only the all-in-one serve brings its own.
    if (withDataPlane) {
      dataPlane = await startDataPlane({ authzAddress: config.authz.listen, meterAddress: config.meter.listen, logger });
      out.info(`tollgate: data plane: ${dataPlane.description}`);
    }
  } catch (error) {
    await mock?.close();
    await plane.close();
    throw error;
  }
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
      // The data plane stops first so no request reaches a role that is already draining; the control plane then
      // reports NOT_SERVING, finishes in-flight Checks, answers open access-log streams and commits the meter's batch.
      (async () => {
        await dataPlane?.close();
        await mock?.close();
        await plane.close();
      })().then(() => {
        out.info("tollgate: drained");
        // Everything is committed and closed; a stray handle (a half-open client socket) must not keep the process up.
        setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
        resolve();
      }, reject);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
};

/** `tollgate migrate`: brings the schema up to date and exits. */
export const migrateCommand: Handler = async (args, out) => {
  const { values } = parse(args, {});
  const db = await openDatabase(configFrom(values).database.url);
  try {
    const applied = await migrate(db);
    out.result({ applied }, () => (applied.length ? `applied ${applied.join(", ")}` : "schema is up to date"));
  } finally {
    await db.close();
  }
};
