import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

/** Awaits a call that must fail with `code`; its message must match `message` (e.g. the field it names). */
export async function refused(call: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have been refused").toBeInstanceOf(ConnectError);
  const e = error as ConnectError;
  expect(Code[e.code], e.rawMessage).toBe(Code[code]);
  if (message) expect(e.rawMessage).toMatch(message);
  return e;
}
