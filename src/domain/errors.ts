/**
 * Why an admin operation refused or failed. One kind per distinct answer a client can act on; src/admin maps each
 * to a Connect code in one table, the CLI to an exit message, so no layer below the edge knows transport codes.
 */
export type AppErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "unauthenticated"
  | "failed_precondition"
  | "resource_exhausted"
  | "aborted"
  | "unavailable";

/** A refusal or an infrastructure fault with a message fit for the client; `field` names the offending input. */
export class AppError extends Error {
  override name = "AppError";
  constructor(
    readonly kind: AppErrorKind,
    message: string,
    readonly field?: string,
  ) {
    super(field ? `${field}: ${message}` : message);
  }
}

/** Thrown when a referenced row does not exist (also for rows the caller may not see, so existence never leaks). */
export class NotFoundError extends AppError {
  override name = "NotFoundError";
  constructor(message: string) {
    super("not_found", message);
  }
}

/** Thrown by a store adapter when the database cannot be reached right now: retrying later may succeed. */
export class StoreUnavailableError extends AppError {
  override name = "StoreUnavailableError";
  constructor(readonly causeError: unknown) {
    super("unavailable", "the store is unavailable; retry shortly");
  }
}

/** An InvalidArgument naming the field, e.g. invalidField("name", "must not be empty") → "name: must not be empty". */
export function invalidField(field: string, message: string): AppError {
  return new AppError("invalid_argument", message, field);
}

/** A PermissionDenied, naming the field when one input is what the caller may not set. */
export function denied(message: string, field?: string): AppError {
  return new AppError("permission_denied", message, field);
}
