// The production image (Dockerfile) ships dist/ without the development tools. This suite rebuilds that layout from
// the built dist/ (run `npm run build` first), as the Dockerfile's build stage leaves it, and runs the image's
// default command and `serve --mock-providers` in it.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execForm } from "../support/dockerfile.js";
import { PACKAGE_ROOT } from "../../src/config/config.js";

const dockerfile = readFileSync(join(PACKAGE_ROOT, "Dockerfile"), "utf8");
/** The first stage, which builds dist/ (stages start at each FROM). */
const buildStage = dockerfile.split(/^FROM /m)[1] ?? "";

/** Directories the build stage deletes from dist/ (`RUN rm -rf dist/…`). */
function removedFromDist(): string[] {
  return [...buildStage.matchAll(/^RUN rm -rf (.+)$/gm)]
    .flatMap((m) => m[1]!.split(/\s+/))
    .filter((p) => p.startsWith("dist/"));
}

/** The node flags of the image's entry point (ENTRYPOINT, exec form: ["node", ...flags, "dist/cli/main.js"]). */
function entryPointFlags(): string[] {
  const [node, ...rest] = execForm(dockerfile, "ENTRYPOINT");
  if (node !== "node" || rest.at(-1) !== "dist/cli/main.js") throw new Error(`unexpected ENTRYPOINT ${node} ${rest}`);
  return rest.slice(0, -1);
}

/** The image's default arguments (CMD, exec form). */
const defaultCommand = () => execForm(dockerfile, "CMD");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the image's entrypoint (node with `nodeFlags`, by default the entry point's) in `dir` until it prints `until`
 * (then, a second later, SIGTERM: serve registers its handlers just after its last line) or exits on its own; killed
 * after 30 s either way.
 */
function runImage(dir: string, args: string[], until?: string, nodeFlags = entryPointFlags()): Promise<Run> {
  const child = spawn(process.execPath, [...nodeFlags, join(dir, "dist/cli/main.js"), ...args], {
    cwd: dir,
    env: {
      PATH: "/usr/bin:/bin",
      NODE_ENV: "production",
      TOLLGATE_DATABASE_URL: `sqlite:${join(dir, "data/tollgate.db")}`,
      TOLLGATE_AUTHZ_LISTEN: "127.0.0.1:0",
      TOLLGATE_METER_LISTEN: "127.0.0.1:0",
      TOLLGATE_ADMIN_LISTEN: "127.0.0.1:0",
      TOLLGATE_LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const run: Run = { code: null, stdout: "", stderr: "" };
  let signalled = false;
  child.stdout.on("data", (d) => {
    run.stdout += d;
    if (until && !signalled && run.stdout.includes(until)) {
      signalled = true;
      setTimeout(() => child.kill("SIGTERM"), 1000);
    }
  });
  child.stderr.on("data", (d) => (run.stderr += d));
  const limit = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    child.on("exit", (code) => {
      clearTimeout(limit);
      resolve({ ...run, code });
    }),
  );
}

describe("the production image", { timeout: 60_000 }, () => {
  let dir = "";
  beforeAll(() => {
    if (!existsSync(join(PACKAGE_ROOT, "dist/cli/main.js")))
      throw new Error("dist/ is missing: run `npm run build` first");
    // Inside the repository, so dist/ resolves node_modules as it does in the image's /app.
    mkdirSync(join(PACKAGE_ROOT, "build"), { recursive: true });
    dir = mkdtempSync(join(PACKAGE_ROOT, "build/image-"));
    cpSync(join(PACKAGE_ROOT, "dist"), join(dir, "dist"), { recursive: true });
    for (const removed of removedFromDist()) rmSync(join(dir, removed), { recursive: true, force: true });
    cpSync(join(PACKAGE_ROOT, "package.json"), join(dir, "package.json"));
    symlinkSync(join(PACKAGE_ROOT, "catalogue"), join(dir, "catalogue"));
    mkdirSync(join(dir, "data"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("is built without the local edge and the mock provider", () => {
    expect(removedFromDist()).toEqual(expect.arrayContaining(["dist/edge", "dist/mock-provider"]));
    expect(existsSync(join(dir, "dist/edge"))).toBe(false);
    expect(existsSync(join(dir, "dist/mock-provider"))).toBe(false);
  });

  it("ships the web console that the admin role serves at /console", () => {
    for (const file of ["index.html", "app.js", "app.css"])
      expect(existsSync(join(dir, "dist/console", file))).toBe(true);
  });

  it("runs its default command (every role, no data plane) and drains on SIGTERM", async () => {
    const run = await runImage(dir, defaultCommand(), "tollgate: local operator credential");
    expect(run.stdout).toContain("tollgate: serving authz, meter, admin");
    expect(run.stdout).toMatch(/tollgate: web console on http:\/\/127\.0\.0\.1:\d+\/console/);
    expect(run.stdout).not.toContain("data plane");
    expect(run.stdout).toContain("tollgate: drained");
    expect(run.stdout).not.toContain("node was started without");
    expect(run.code).toBe(0);
  });

  it("warns, naming the flags, when node runs serve without the entry point's node flags", async () => {
    const run = await runImage(dir, defaultCommand(), "tollgate: local operator credential", []);
    expect(run.stdout).toContain("node was started without --no-memory-reducer --initial-old-space-size=256");
    expect(run.code).toBe(0);
  });

  it("refuses `serve --mock-providers` with a message that names the missing development tool", async () => {
    const run = await runImage(dir, ["serve", "--mock-providers"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("is a development tool and this build (the production image) does not include it");
    expect(run.stderr).not.toContain("ERR_MODULE_NOT_FOUND");
    expect(run.stdout).not.toContain("tollgate: serving");
  });

  it("refuses `serve --no-data-plane --mock-providers` alike: the mock provider is not in the image either", async () => {
    const run = await runImage(dir, ["serve", "--no-data-plane", "--mock-providers"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("the mock provider is a development tool");
  });
});
