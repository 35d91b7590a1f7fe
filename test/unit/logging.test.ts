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
});
