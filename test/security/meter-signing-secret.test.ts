import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";
import { resolveSigningSecrets } from "../../src/config/signing-secret.js";
import { createDecisionSigner, createDecisionVerifier } from "../../src/dataplane/signing/decision-signature.js";
import { startControlPlane } from "../../src/app/control-plane.js";
import { createLogger } from "../../src/logging.js";
import { unsignedAuthzMetadata } from "../support/als-client.js";

const dir = mkdtempSync(join(tmpdir(), "tollgate-signing-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the signing secret authz and the meter share", () => {
  it("on SQLite, is created once beside the database with mode 0600 and read back by every later process", () => {
    const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "a", "tollgate.db")}` } });
    const first = resolveSigningSecrets(config);
    expect(first.source).toBe(join(dir, "a", "signing.key"));
    expect(statSync(first.source).mode & 0o777).toBe(0o600);
    expect(Buffer.byteLength(first.secret)).toBeGreaterThanOrEqual(32);
    expect(resolveSigningSecrets(config).secret).toBe(first.secret);
  });

  it("on PostgreSQL, is never generated: a meter-only process without one does not start, and says how to fix it", async () => {
    const config = loadConfig({ env: { TOLLGATE_DATABASE_URL: "postgres://nowhere.invalid/db" } });
    expect(() => resolveSigningSecrets(config)).toThrow(
      /^config: signing\.secret: not set\. .*set TOLLGATE_SIGNING_SECRET \(at least 32 bytes/,
    );
    // Start-up refuses before it touches the (unreachable) database.
    await expect(
      startControlPlane(config, { roles: ["meter"], logger: createLogger({ level: "silent" }) }),
    ).rejects.toThrow(/signing\.secret: not set/);
  });

  it("refuses a secret shorter than 32 bytes, naming the field and not echoing it", () => {
    expect(() => loadConfig({ env: { TOLLGATE_SIGNING_SECRET: "short-secret-value" } })).toThrow(
      "config: signing.secret: must be at least 32 bytes (from environment variable TOLLGATE_SIGNING_SECRET)",
    );
  });

  it("keeps an all-digit secret as text", () => {
    const digits = "1".repeat(40);
    expect(loadConfig({ env: { TOLLGATE_SIGNING_SECRET: digits } }).signing.secret).toBe(digits);
  });

  it("verifies entries signed with a previous secret while it is listed (rotation), and not after", () => {
    const old = "old-signing-secret-0123456789abcdefghij";
    const next = "new-signing-secret-0123456789abcdefghij";
    const metadata = unsignedAuthzMetadata({ decisionId: "d-1", accountId: "acct_1" });
    const signed = { ...metadata, sig: createDecisionSigner(old).signMetadata(metadata)! };
    const config = loadConfig({
      env: {
        TOLLGATE_SIGNING_SECRET: next,
        TOLLGATE_SIGNING_PREVIOUS_SECRETS: `${old}, another-old-secret-0123456789abcdefgh`,
      },
    });
    expect(config.signing.previous_secrets).toEqual([old, "another-old-secret-0123456789abcdefgh"]);
    expect(createDecisionVerifier(config.signing.secret!, config.signing.previous_secrets).verify(signed)).toBe(true);
    expect(createDecisionVerifier(next).verify(signed)).toBe(false);
  });
});
