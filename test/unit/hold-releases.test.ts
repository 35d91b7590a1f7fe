import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createHoldReleaser } from "../../src/app/hold-releases.js";
import { createLogger } from "../../src/logging.js";

const held = { keyId: "key_1", accountId: "acct_1", decisionId: "dec_1", now: 0 };
const logger = createLogger({ level: "silent" });

describe("hold releaser", () => {
  it("retries a release until the store answers, and then stops", async () => {
    let calls = 0;
    const releaser = createHoldReleaser({
      logger,
      release: () => {
        calls++;
        if (calls < 3) throw new Error("Command timed out");
      },
    });
    releaser.schedule(held, false);
    await sleep(600);
    expect(calls).toBe(3);
    expect(releaser.pending()).toBe(0);
    releaser.close();
  });

  it("a hold that may still run late is released once more after confirmAfterMs", async () => {
    let calls = 0;
    const releaser = createHoldReleaser({ logger, confirmAfterMs: 100, release: () => void calls++ });
    releaser.schedule(held, true);
    await sleep(20);
    expect(calls).toBe(1);
    expect(releaser.pending()).toBe(1);
    await sleep(200);
    expect(calls).toBe(2);
    expect(releaser.pending()).toBe(0);
    releaser.close();
  });

  it("keeps at most maxPending releases waiting (an outage cannot grow memory without bound)", async () => {
    let calls = 0;
    const releaser = createHoldReleaser({
      logger,
      maxPending: 2,
      release: () => {
        calls++;
        throw new Error("down");
      },
    });
    for (let i = 0; i < 5; i++) releaser.schedule({ ...held, decisionId: `dec_${i}` }, false);
    await sleep(10);
    expect(calls).toBe(2);
    expect(releaser.pending()).toBe(2);
    releaser.close();
    expect(releaser.pending()).toBe(0);
  });
});
