import { migrate, openDatabase } from "../../adapters/sql/database.js";
import { startControlPlane, type Role } from "../../app/control-plane.js";
import { startDataPlane, type RunningDataPlane } from "../../edge/data-plane.js";
import { createLogger } from "../../logging.js";
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
  const logger = createLogger({ level: config.log.level });
  const plane = await startControlPlane(config, { roles: roles as Role[], logger, mockProviders: values["mock-providers"] });
  out.info(`tollgate: serving ${roles.join(", ")} on ${config.database.url.startsWith("sqlite:") ? `the embedded SQLite store (${config.database.url})` : "PostgreSQL"}`);
  if (plane.authz) out.info(`tollgate: authz (Envoy ext_authz gRPC) on ${config.authz.listen}`);
  if (plane.metering.server) out.info(`tollgate: meter (Envoy access log gRPC) on ${config.meter.listen}`);
  if (plane.admin) out.info(`tollgate: admin (Connect, gRPC, gRPC-Web; reflection) on ${config.admin.listen.replace(/:\d+$/, ":" + plane.admin.port)}`);
  let mock: MockProvider | undefined;
  let dataPlane: RunningDataPlane | undefined;
  try {
    if (values["mock-providers"]) {
      mock = await startMockProvider();
      out.info(`tollgate: mock provider on ${mock.url} (every provider's credential is mock-<provider>)`);
    }
    // A single-role process is one replica behind a separately run Envoy; only the all-in-one serve brings its own.
    if (values.role === undefined && !values["no-data-plane"]) {
      dataPlane = await startDataPlane({ authzAddress: config.authz.listen, meterAddress: config.meter.listen, logger });
      out.info(`tollgate: data plane: ${dataPlane.description}`);
    }
  } catch (error) {
    await mock?.close();
    await plane.close();
    throw error;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      out.info(`tollgate: ${signal}: draining`);
      // The data plane stops first so no request reaches a role that is already draining.
      (async () => {
        await dataPlane?.close();
        await mock?.close();
        await plane.close();
      })().then(resolve, resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
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
