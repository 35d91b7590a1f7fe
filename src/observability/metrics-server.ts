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

/**
 * A plain HTTP/1.1 listener (metrics.listen) serving /metrics, /healthz and /readyz, for processes that run authz or
 * meter without the admin role: Prometheus scrapes every replica, not only the one with the admin API.
 */
export async function startMetricsServer(address: string, metrics: Metrics, ready: () => Promise<boolean>): Promise<RunningMetricsServer> {
  const server = http.createServer((req, res) => {
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
  });
  return {
    port: await listenOn(server, address),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
