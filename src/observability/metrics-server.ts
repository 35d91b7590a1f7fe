import http from "node:http";
import { listenOn } from "./listen.js";
import type { Metrics } from "./metrics.js";

/** A running metrics listener. */
export interface RunningMetricsServer {
  port: number;
  close(): Promise<void>;
}

async function sendMetrics(metrics: Metrics, res: http.ServerResponse): Promise<void> {
  const { contentType, body } = await metrics.render();
  res.writeHead(200, { "content-type": contentType });
  res.end(body);
}

/** What one scraper connection may cost: a stalled or idle one is closed, and there are only so many. */
export interface MetricsServerLimits {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
}

/** Scrapers send a bare GET every few seconds; these bounds leave them ample room. */
export const METRICS_SERVER_LIMITS: MetricsServerLimits = {
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxConnections: 256,
};

/**
 * A plain HTTP/1.1 listener (metrics.listen) serving /metrics, /healthz and /readyz, for processes that run authz or
 * meter without the admin role: Prometheus scrapes every replica, not only the one with the admin API.
 */
export async function startMetricsServer(
  address: string,
  metrics: Metrics,
  ready: () => Promise<boolean>,
  limits: MetricsServerLimits = METRICS_SERVER_LIMITS,
): Promise<RunningMetricsServer> {
  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.headersTimeoutMs * 2,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, limits.headersTimeoutMs / 4)),
    },
    respond(metrics, ready),
  );
  server.timeout = limits.idleTimeoutMs;
  server.maxConnections = limits.maxConnections;
  return {
    port: await listenOn(server, address),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The listener's routes: /metrics, /healthz, /readyz, and 404 for anything else. */
function respond(metrics: Metrics, ready: () => Promise<boolean>): http.RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? "/", "http://metrics").pathname;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (path === "/metrics") return void sendMetrics(metrics, res).catch(() => json(500, { status: "error" }));
    if (path === "/healthz") return json(200, { status: "ok" });
    if (path === "/readyz") {
      return void ready()
        .catch(() => false)
        .then((ok) => json(ok ? 200 : 503, { status: ok ? "ready" : "unavailable" }));
    }
    json(404, { code: "not_found", message: `no route for ${req.method} ${path}` });
  };
}
