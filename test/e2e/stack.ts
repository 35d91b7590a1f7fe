import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { startControlPlane, type ControlPlane } from "../../src/app/control-plane.js";
import { TEST_SIGNING_SECRET } from "../support/als-client.js";
import { loadConfig, PACKAGE_ROOT } from "../../src/config/config.js";
import { createEdge, type Edge } from "../../src/edge/edge.js";
import { LOCAL_FILE_LOG_PATH } from "../../src/edge/envoy-contract.js";
import { nanos } from "../../src/domain/money.js";
import { createLogger } from "../../src/logging.js";
import { createMockProvider, startMockProvider, type MockProvider } from "../../src/mock-provider/mock-provider.js";
import { sqliteTarget } from "../support/services.js";

/** Which data plane a suite runs against. */
export type DataPlaneKind = "edge" | "envoy";

/** Control plane + mock provider + data plane, wired like `tollgate serve --mock-providers`. */
export interface Stack {
  kind: DataPlaneKind;
  /** The OpenAI-compatible base URL clients use ("…/v1"). */
  baseURL: string;
  plane: ControlPlane;
  /** The admin API's URL when the stack was started with `admin` (for CLI runs in the test). */
  adminUrl?: string;
  mock: MockProvider;
  logs: string[];
  /** A new account on `plan` funded with `fund` nano-USD (default $10), and a key for it. */
  account(
    plan?: string,
    key?: Partial<Parameters<ControlPlane["stores"]["keys"]["create"]>[0]>,
    fund?: bigint,
  ): Promise<{ accountId: string; keyId: string; secret: string }>;
  /** Pushes buffered access-log entries out (the edge flushes on demand, Envoy every second). */
  flushAccessLogs(): Promise<void>;
  /** File access-log lines written since the stack started, parsed. */
  fileLog(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** The `envoy` binary on PATH, or undefined; the Envoy variant of the suite runs only when there is one. */
export function envoyOnPath(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "envoy");
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** What a suite may change in the stack. */
export interface StackOptions {
  /** The control plane's clock. */
  clock?: () => number;
  /** Also run the admin role (on an ephemeral port: `adminUrl`), so a test can run the CLI against the stack. */
  admin?: boolean;
  /** The catalogue file the control plane seeds (default: catalogue/default.yaml). */
  catalogueFile?: string;
  /** The edge's routes (provider id → origin), e.g. providerUpstreams() of a rendered bootstrap; others: the mock. */
  upstreams?: Record<string, string>;
  /** The bootstrap Envoy runs, or the edge stands in for (default envoy/envoy.local.yaml). */
  envoyYamlPath?: string;
}

/**
 * Starts the stack; `clock` is the control plane's clock, so a test can move time (past a rate-limit window) without
 * waiting. The edge variant uses ephemeral ports throughout; the Envoy variant must use the fixed ports
 * envoy/envoy.local.yaml declares (authz 9001, meter 9002, mock 9100, listener 10000, admin 9901), so it cannot
 * run beside a `tollgate serve` on the same machine. The control plane is started directly (not startTestPlane)
 * because the Envoy variant needs authz on its fixed port.
 */
export async function startStack(kind: DataPlaneKind, options: StackOptions = {}): Promise<Stack> {
  const target = sqliteTarget();
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const fixed = kind === "envoy";
  const config = loadConfig({
    env: { TOLLGATE_DATABASE_URL: target.url, TOLLGATE_SIGNING_SECRET: TEST_SIGNING_SECRET },
    overrides: {
      "authz.listen": fixed ? "127.0.0.1:9001" : "127.0.0.1:0",
      "meter.listen": fixed ? "127.0.0.1:9002" : "127.0.0.1:0",
      "keys.poll_interval_ms": 200,
      ...(options.catalogueFile ? { "catalogue.file": options.catalogueFile } : {}),
      ...(options.admin ? { "admin.listen": "127.0.0.1:0" } : {}),
    },
  });
  const logger = createLogger({ level: "debug", destination });
  const plane = await startControlPlane(config, {
    roles: options.admin ? ["authz", "meter", "admin"] : ["authz", "meter"],
    logger,
    mockProviders: true,
    clock: options.clock,
  });
  // The meter role is always started above, so the real meter receives the access log.
  const meterServer = plane.metering.server;
  if (!meterServer) throw new Error("the control plane started without its meter role");
  const meterPort = meterServer.port;
  const mock = fixed ? await startMockProvider() : await createMockProvider();
  const authzAddress = `127.0.0.1:${plane.authz!.port}`;

  let edge: Edge | undefined;
  let envoy: ChildProcess | undefined;
  let logDir: string | undefined;
  let fileLogPath: string;
  let fileLogStart = 0;
  let baseURL: string;
  if (kind === "edge") {
    logDir = mkdtempSync(join(tmpdir(), "tollgate-edge-"));
    fileLogPath = join(logDir, "access.json");
    edge = await createEdge({
      authzAddress,
      meterAddress: `127.0.0.1:${meterPort}`,
      host: "127.0.0.1",
      port: 0,
      defaultUpstream: mock.url,
      upstreams: options.upstreams,
      envoyYamlPath: options.envoyYamlPath,
      fileLogPath,
      alsFlushIntervalMs: 50,
      logger,
    });
    baseURL = `${edge.url}/v1`;
  } else {
    fileLogPath = LOCAL_FILE_LOG_PATH;
    fileLogStart = existsSync(fileLogPath) ? statSync(fileLogPath).size : 0;
    const bootstrap = options.envoyYamlPath ?? "envoy/envoy.local.yaml";
    envoy = spawn(envoyOnPath()!, ["-c", bootstrap, "--disable-hot-restart", "--log-level", "warn"], {
      cwd: PACKAGE_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    envoy.stdout!.on("data", (d) => logs.push(`envoy: ${d}`));
    envoy.stderr!.on("data", (d) => logs.push(`envoy: ${d}`));
    await waitForEnvoy();
    baseURL = "http://127.0.0.1:10000/v1";
  }

  return {
    kind,
    baseURL,
    plane,
    adminUrl: plane.admin ? `http://127.0.0.1:${plane.admin.port}` : undefined,
    mock,
    logs,
    async account(plan = "pro", key = {}, fund = 10_000_000_000n) {
      const account = await plane.stores.accounts.create({ name: "E2E account", planId: plan });
      if (fund > 0n) {
        const { change } = await plane.stores.ledger.topUp({
          accountId: account.id,
          amount: nanos(fund),
          feeBps: 2_500,
          now: (options.clock ?? Date.now)(),
        });
        await plane.metering.credits.committed([change]);
      }
      const issued = await plane.stores.keys.create({ accountId: account.id, name: "e2e", ...key });
      return { accountId: account.id, keyId: issued.key.id, secret: issued.secret };
    },
    async flushAccessLogs() {
      if (edge) {
        edge.flushAccessLogs();
        await sleep(100);
      } else await sleep(1_500); // envoy.yaml buffer_flush_interval: 1 s
    },
    fileLog() {
      if (!existsSync(fileLogPath)) return [];
      const text = readFileSync(fileLogPath).subarray(fileLogStart).toString("utf8");
      return text
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async close() {
      await edge?.close();
      if (envoy && envoy.exitCode === null) {
        const exited = new Promise((resolve) => envoy!.once("exit", resolve));
        envoy.kill("SIGTERM");
        await exited;
      }
      await mock.close();
      await plane.close();
      await target.cleanup();
      if (logDir) rmSync(logDir, { recursive: true, force: true });
    },
  };
}

/** Envoy is ready when its admin says LIVE and the listener answers (first health checks have passed). */
async function waitForEnvoy(): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      const ready = await fetch("http://127.0.0.1:9901/ready");
      if (ready.ok) {
        const probe = await fetch("http://127.0.0.1:10000/v1/models");
        if (probe.status === 401) return;
      }
    } catch {
      // not up yet
    }
    await sleep(200);
  }
  throw new Error("envoy did not become ready within 20 s (authz health check, listener 0.0.0.0:10000)");
}
