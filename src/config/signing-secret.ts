import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError, type Config } from "./config.js";

/** The secret authz signs billing metadata with, the older ones the meter still accepts, and where it came from. */
export interface SigningSecrets {
  secret: string;
  previous: string[];
  /** "signing.secret", or the file it was read from or created in (for the start-up log; never the secret). */
  source: string;
}

/** File name of the generated secret beside an embedded (SQLite) database. */
export const SIGNING_KEY_FILE = "signing.key";

/** The SQLite database file of a `sqlite:PATH` URL, or undefined (PostgreSQL, or an in-memory database). */
function sqlitePath(url: string): string | undefined {
  if (!url.startsWith("sqlite:")) return undefined;
  const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
  return path === "" || path === ":memory:" ? undefined : path;
}

function readSecret(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`config: signing.secret_file: cannot read ${file}: ${(error as Error).message}`);
  }
  const secret = text.trim();
  if (Buffer.byteLength(secret, "utf8") < 32)
    throw new ConfigError(`config: signing.secret_file: ${file} must hold at least 32 bytes`);
  return secret;
}

/** Creates the file with a fresh secret (mode 0600), unless another process got there first: then reads theirs. */
function createSecret(file: string): string {
  mkdirSync(dirname(file), { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  try {
    writeFileSync(file, `${secret}\n`, { flag: "wx", mode: 0o600 });
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return readSecret(file)!;
    throw new ConfigError(`config: signing.secret_file: cannot create ${file}: ${(error as Error).message}`);
  }
}

/**
 * Finds the signing secret authz and the meter share: signing.secret (TOLLGATE_SIGNING_SECRET), else the file
 * signing.secret_file names, else `signing.key` beside a SQLite database. Only on SQLite (one host by nature) is a
 * missing file created, so `npm start` needs no set-up and every process on that database shares it; on
 * PostgreSQL, where authz and meter replicas run apart, a missing secret stops start-up with this message.
 */
export function resolveSigningSecrets(config: Config): SigningSecrets {
  const previous = config.signing.previous_secrets;
  if (config.signing.secret) return { secret: config.signing.secret, previous, source: "signing.secret" };
  const db = sqlitePath(config.database.url);
  const file = config.signing.secret_file ?? (db ? join(dirname(db), SIGNING_KEY_FILE) : undefined);
  if (file) {
    const found = readSecret(file);
    if (found) return { secret: found, previous, source: file };
    if (db) return { secret: createSecret(file), previous, source: file };
  } else if (config.database.url.startsWith("sqlite:")) {
    // An in-memory database lives and dies with this one process: so does its secret.
    return { secret: randomBytes(32).toString("base64url"), previous, source: "generated for this in-memory database" };
  }
  throw new ConfigError(
    `config: signing.secret: not set${file ? `, and ${file} does not exist` : ""}. authz signs billing metadata and the meter ` +
      "verifies it, so every authz and meter process must share one secret: set TOLLGATE_SIGNING_SECRET (at least 32 bytes, " +
      "e.g. `openssl rand -base64 48`) or signing.secret_file on each of them",
  );
}
