/** Socket-level error codes: the database could not be reached or the connection broke mid-statement. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/**
 * PostgreSQL SQLSTATEs that mean "not now" rather than "never": class 08 (connection exception), 57P01–57P03
 * (shutdown, crash shutdown, cannot connect now: a restarting server), 53300 (too many connections), 40001/40P01
 * (serialization failure, deadlock: the same transaction succeeds when retried).
 */
const RETRYABLE_SQLSTATES = /^(08...|57P0[123]|53300|40001|40P01)$/;

/** SQLite result codes that clear by themselves (another writer holds the lock, a transient I/O fault). */
const SQLITE_TRANSIENT = /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL)/;

/** Driver and pool messages that carry no code (pg's terminated client, knex's pool). */
const MESSAGES = [
  /Connection terminated/i,
  /Client has encountered a connection error/i,
  /Timeout acquiring a connection/i,
  /connect ECONNREFUSED/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
];

/**
 * True when a store error means the database is unreachable or briefly unable to commit (so the same write will
 * succeed later and the meter should spool and retry it); false for logical errors (bad data, constraint, bug),
 * which retrying cannot fix.
 */
export function isStoreUnavailable(error: unknown): boolean {
  for (
    let e: unknown = error, depth = 0;
    e && typeof e === "object" && depth < 4;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const code = (e as { code?: unknown }).code;
    if (
      typeof code === "string" &&
      (NETWORK_CODES.has(code) || RETRYABLE_SQLSTATES.test(code) || SQLITE_TRANSIENT.test(code))
    )
      return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && MESSAGES.some((m) => m.test(message))) return true;
    // AggregateError (a dual-stack connect refused on ::1 and 127.0.0.1).
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.some((inner) => isStoreUnavailable(inner))) return true;
  }
  return false;
}
