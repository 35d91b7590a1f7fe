// Starts a test Redis Cluster in its own process (as a vitest fork would), prints its redis-server pids as one JSON
// line, and waits to be signalled: test/integration/redis-cluster-helper-cleanup.test.ts checks what survives it.
import { startRedisCluster } from "./redis-cluster.js";

const cluster = await startRedisCluster();
process.stdout.write(`${JSON.stringify(cluster.nodes.map((n) => n.process.pid))}\n`);
setInterval(() => undefined, 60_000);
