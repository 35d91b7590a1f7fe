import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import type { JsonValue } from "@bufbuild/protobuf";
import { sqliteTarget } from "../../support/services.js";
import { startTestPlane, type TestPlane } from "../../support/control-plane.js";
import {
  checkRequestFromJson,
  envoyCheckRequest,
  outcome,
  type CheckOutcome,
  type CheckShape,
} from "../../support/authz-client.js";

/** A settable clock, so expiry and grace periods are tested without sleeping. */
export const clock = { now: Date.parse("2026-11-26T12:00:00Z") };

/** Starts one control plane (embedded SQLite, authz on a real gRPC port) for the file's tests. */
export function useCheckPlane(): () => TestPlane {
  let plane: TestPlane;
  beforeAll(async () => {
    plane = await startTestPlane(sqliteTarget(), { clock: () => clock.now });
  });
  afterAll(async () => {
    await plane?.close();
  });
  return () => plane;
}

/** Sends an Envoy-shaped CheckRequest over gRPC and flattens the answer. */
export async function check(plane: TestPlane, shape: CheckShape): Promise<CheckOutcome> {
  return outcome(await plane.authz.check(envoyCheckRequest(shape)));
}

/** Sends a JSON fixture from test/contract/fixtures with `${KEY}` replaced. */
export async function checkFixture(
  plane: TestPlane,
  name: string,
  vars: Record<string, string>,
): Promise<CheckOutcome> {
  const json = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures", name), "utf8")) as JsonValue;
  return outcome(await plane.authz.check(checkRequestFromJson(json, vars)));
}

/** A minimal valid chat body for `model`. */
export function chat(model = "gpt-5.5", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model, messages: [{ role: "user", content: "Say hello" }], ...extra });
}

/** Authorization headers for a secret. */
export function bearer(secret: string): Record<string, string> {
  return { authorization: `Bearer ${secret}` };
}
