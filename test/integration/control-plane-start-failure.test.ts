import { createServer, type Server } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { sqliteTarget } from "../support/services.js";
import { startTestPlane } from "../support/control-plane.js";

/** A TCP port something already listens on. */
async function occupiedPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

describe("control plane: a failure mid-start", () => {
  const target = sqliteTarget();
  afterAll(() => target.cleanup());

  it("closes what had started (the admission lease among it), so the next start on the same database succeeds", async () => {
    const busy = await occupiedPort();
    try {
      // The meter's port is taken: start fails after the stores and the single-admission lease were opened.
      const failed = startTestPlane(
        { ...target, cleanup: async () => undefined },
        { roles: ["authz", "meter"], env: { TOLLGATE_METER_LISTEN: `127.0.0.1:${busy.port}` } },
      );
      await expect(failed).rejects.toThrow();
    } finally {
      busy.server.close();
    }
    // Had the failed start kept its lease, this authz process would be refused as a second admitter on the database.
    const t = await startTestPlane(
      { ...target, cleanup: async () => undefined },
      { roles: ["authz", "meter"], env: { TOLLGATE_METER_LISTEN: "127.0.0.1:0" } },
    );
    expect(await t.plane.ready()).toBe(true);
    await t.close();
  }, 30_000);
});
