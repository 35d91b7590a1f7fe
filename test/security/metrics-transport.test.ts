import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createMetrics } from "../../src/observability/metrics.js";
import { startMetricsServer, type RunningMetricsServer } from "../../src/observability/metrics-server.js";
import { until } from "../support/cli.js";

/** Opens `count` sockets that send one byte of a request line and stall; counts how many the server has closed. */
async function stalled(port: number, count: number): Promise<{ sockets: net.Socket[]; closed: () => number }> {
  let closed = 0;
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1", () => (socket.write("G"), resolve(socket)));
          socket.once("error", reject);
          socket.on("error", () => {});
          socket.on("close", () => closed++);
          socket.resume();
        }),
    ),
  );
  return { sockets, closed: () => closed };
}

describe("metrics listener transport limits", () => {
  let server: RunningMetricsServer | undefined;
  afterEach(() => server?.close());

  it("closes connections that stall before their request headers, within headersTimeoutMs", async () => {
    server = await startMetricsServer("127.0.0.1:0", createMetrics(), async () => true, {
      headersTimeoutMs: 500,
      idleTimeoutMs: 60_000,
      maxConnections: 256,
    });
    const { sockets, closed } = await stalled(server.port, 50);
    try {
      // Node's defaults (60 s, checked every 30 s) would keep them far past this bound.
      await until("stalled sockets closed", () => closed() === 50, 8000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it("refuses connections beyond maxConnections", async () => {
    server = await startMetricsServer("127.0.0.1:0", createMetrics(), async () => true, {
      headersTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      maxConnections: 10,
    });
    const { sockets, closed } = await stalled(server.port, 15);
    try {
      await until("connections over the cap closed", () => closed() === 5, 5000);
      expect(closed()).toBe(5);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});
