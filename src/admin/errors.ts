import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { AppError, type AppErrorKind } from "../domain/errors.js";
import type { Logger } from "../logging.js";

/** The one table from a use case's refusal to a Connect code. */
const CODES: Record<AppErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  aborted: Code.Aborted,
  unavailable: Code.Unavailable,
};

/**
 * Turns whatever a handler threw into the ConnectError the client gets. Refusals keep their message; a store that
 * cannot be reached is Unavailable (retry); anything else is a fault: logged at error level with a request id, and
 * answered Internal with that id only (no driver text, no SQL reaches a client).
 */
export function toConnectError(error: unknown, logger: Logger | undefined, method: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof AppError) {
    if (error.kind === "unavailable")
      logger?.warn(
        { method, err: (error as { causeError?: unknown }).causeError ?? error },
        "admin call: store unavailable",
      );
    return new ConnectError(error.message, CODES[error.kind]);
  }
  const requestId = randomUUID();
  logger?.error({ err: error, method, requestId }, "admin call failed");
  return new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
}

type Handler = (...args: unknown[]) => unknown;

/** Wraps every method of a service implementation so its errors go through toConnectError (streams included). */
export function guarded<T extends object>(impl: T, service: string, logger: Logger | undefined): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl)) {
    const method = `${service}/${name}`;
    const handler = fn as Handler;
    out[name] =
      handler.constructor.name === "AsyncGeneratorFunction"
        ? async function* (...args: unknown[]) {
            try {
              yield* handler(...args) as AsyncGenerator<unknown>;
            } catch (error) {
              throw toConnectError(error, logger, method);
            }
          }
        : async (...args: unknown[]) => {
            try {
              return await handler(...args);
            } catch (error) {
              throw toConnectError(error, logger, method);
            }
          };
  }
  return out as T;
}
