import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, scrub } from "../../src/logging.js";

function capture() {
  const lines: string[] = [];
  const destination = new Writable({ write: (chunk, _e, done) => (lines.push(String(chunk)), done()) });
  return { lines, logger: createLogger({ level: "debug", destination }) };
}

describe("logger redaction", () => {
  const key = "tg_" + "Ab3".repeat(13) + "x";

  it("scrubs key-shaped text and bearer credentials from strings", () => {
    expect(scrub(`key ${key} used`)).toBe("key [redacted] used");
    expect(scrub("Authorization: Bearer sk-live-123")).toBe("Authorization: Bearer [redacted]");
  });

  it("redacts secret fields by name and scrubs messages, nested objects and errors", () => {
    const { lines, logger } = capture();
    logger.info({ authorization: `Bearer ${key}`, secret: key, nested: { note: `saw ${key}` } }, `request with ${key}`);
    logger.error({ err: new Error(`upstream said Bearer ${key}`) }, "failed");
    const text = lines.join("");
    expect(text).not.toContain(key);
    expect(text).toContain("[redacted]");
    expect(lines).toHaveLength(2);
  });

  it("scrubs admin tokens (tga_), admin token hashes (64 hex) and key hashes (43 base64url) from strings and errors", () => {
    const adminToken = "tga_" + "Zq9".repeat(13) + "w";
    const tokenHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const keyHash = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";
    expect(scrub(`admin ${adminToken} here`)).toBe("admin [redacted] here");
    expect(scrub(`token_hash = '${tokenHash}'`)).toBe("token_hash = '[redacted]'");
    expect(scrub(`secret_hash = '${keyHash}'`)).toBe("secret_hash = '[redacted]'");
    const { lines, logger } = capture();
    // A driver error that quotes a query's bound values.
    logger.error(
      { err: new Error(`insert into "api_keys" ... values ('${keyHash}', '${tokenHash}') - UNIQUE constraint failed`) },
      `saw ${adminToken}`,
    );
    const text = lines.join("");
    for (const secret of [adminToken, tokenHash, keyHash]) expect(text).not.toContain(secret);
  });

  it("leaves ordinary ids, uuids and numbers alone", () => {
    const text =
      "key_01HZX3 decision 0b7c3a52-8f1e-4b5a-9c61-2d4e6f8a0b1c took 1234567890 ms in tollgate.admin.v1.KeyService/UpdateKey";
    expect(scrub(text)).toBe(text);
  });

  it("leaves 43-character snake_case names (metric names) alone while scrubbing a digest of that length", () => {
    const metric = "tollgate_meter_usage_over_reservation_total";
    expect(metric).toHaveLength(43);
    expect(scrub(`see ${metric}`)).toBe(`see ${metric}`);
    const digest = createHash("sha256").update("tg_example").digest("base64url");
    expect(scrub(`hash ${digest}`)).toBe("hash [redacted]");
  });
});
