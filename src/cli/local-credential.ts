import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { auditDirect as auditOnDatabase, type Database } from "../app/stores.js";
import { createAdminTokenStore } from "../admin/tokens.js";
import type { Config } from "../config/config.js";

/** The name of the operator token `serve` keeps for the CLI on the same machine. */
export const LOCAL_TOKEN_NAME = "local";

/** Where `serve` writes the local operator credential: `<data.dir>/admin-token`. */
export function localCredentialPath(config: Config): string {
  return resolve(join(config.data.dir, "admin-token"));
}

/** The local operator credential, or undefined when the file is absent or empty. */
export function readLocalCredential(config: Config): string | undefined {
  try {
    return readFileSync(localCredentialPath(config), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Records a change made straight on the database (bootstrap: no admin API yet, or the admin API's own credential)
 * in the same audit log the admin API writes, naming its actor.
 */
export async function auditDirect(
  db: Database,
  actor: string,
  method: string,
  targets: Record<string, string>,
): Promise<void> {
  await auditOnDatabase(db, actor, method, targets);
}

/**
 * Makes sure the CLI on this machine can reach the admin API with no set-up: keeps the operator token in
 * `<data.dir>/admin-token` (mode 0600) if it still verifies, else mints one named "local" and writes it there
 * (write-then-rename, so a reader never sees half a token). Returns the file's path.
 */
export async function ensureLocalCredential(db: Database, config: Config): Promise<string> {
  const path = localCredentialPath(config);
  const tokens = createAdminTokenStore(db);
  const current = readLocalCredential(config);
  if (current && (await tokens.verify(current))?.kind === "operator") return path;
  const { token, secret } = await tokens.create({ kind: "operator" }, LOCAL_TOKEN_NAME);
  mkdirSync(config.data.dir, { recursive: true, mode: 0o700 });
  const partial = `${path}.${process.pid}.tmp`;
  writeFileSync(partial, secret + "\n", { mode: 0o600 });
  // The umask cannot widen 0600, but a pre-existing file keeps its mode: set it explicitly.
  chmodSync(partial, 0o600);
  renameSync(partial, path);
  await auditDirect(db, "bootstrap", "tollgate.cli/CreateLocalAdminToken", { admin_token_id: token.id });
  return path;
}
