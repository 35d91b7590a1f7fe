import { migrate, openDatabase } from "../../adapters/sql/database.js";
import { startControlPlane, type Role } from "../../app/control-plane.js";
import { createLogger } from "../../logging.js";
import { configFrom, parse, UsageError, type Handler } from "../cli-kit.js";

const ROLES: readonly Role[] = ["authz", "meter", "admin"];

/** `tollgate serve`: runs the roles until SIGTERM or SIGINT, then drains. */
export const serve: Handler = async (args, out) => {
  const { values } = parse(args, { role: { type: "string", multiple: true }, "mock-providers": { type: "boolean" } });
  const roles = (values.role ?? [...ROLES]).flatMap((r) => r.split(","));
  for (const role of roles) if (!ROLES.includes(role as Role)) throw new UsageError(`--role must be authz, meter or admin, not "${role}"`);
  const config = configFrom(values);
  const logger = createLogger({ level: config.log.level });
  const plane = await startControlPlane(config, { roles: roles as Role[], logger, mockProviders: values["mock-providers"] });
  out.info(`tollgate: serving ${roles.join(", ")} on ${config.database.url.startsWith("sqlite:") ? `the embedded SQLite store (${config.database.url})` : "PostgreSQL"}`);
  if (plane.authz) out.info(`tollgate: authz (Envoy ext_authz gRPC) on ${config.authz.listen}`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      out.info(`tollgate: ${signal}: draining`);
      plane.close().then(resolve, resolve);
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
