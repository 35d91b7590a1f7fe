// The transport floor for test/security/authz-victim.isolated.test.ts, in a process of its own as authz is: a gRPC
// server that lifts each CheckRequest as authz does and answers OK without deciding (lift-only-server.ts).
// `node --import tsx authz-transport-floor.ts` prints its port, then serves until stdin closes.
import { startLiftOnlyServer } from "./lift-only-server.js";

const server = await startLiftOnlyServer();
process.stdout.write(`${server.port}\n`);
process.stdin.resume();
process.stdin.on("close", () => void server.close().then(() => process.exit(0)));
