import { existsSync, readFileSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../config/config.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Where `npm run build` writes the console (scripts/build-console.mjs). */
export const CONSOLE_DIST = join(PACKAGE_ROOT, "dist/console");

/** The console's paths: the page itself and its assets; GET only, answered without a token (they hold no data). */
export const CONSOLE_PATH = /^\/console(\/[A-Za-z0-9_-]*(\.[a-z0-9]+)?)?$/;

/**
 * No inline script or style, nothing from another origin: scripts, styles and calls come from the admin port only,
 * and no other site may frame the console.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** The console's files, read once on first use: they are a few tens of KB and never change while serving. */
let assets: Map<string, { body: Buffer; type: string }> | undefined;

function load(): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of ["index.html", "app.js", "app.css"]) {
    const path = join(CONSOLE_DIST, name);
    if (existsSync(path))
      files.set(name, { body: readFileSync(path), type: TYPES[name.slice(name.lastIndexOf("."))]! });
  }
  return files;
}

/**
 * Answers GET /console (the page) and /console/<asset> with the security headers every console response carries.
 * Paths that are not assets get the page too (the console routes in the browser). 404 when the console was not built.
 */
export function serveConsole(req: NodeRequest, res: NodeResponse, pathname: string): void {
  if (assets === undefined || assets.size === 0) assets = load();
  const name = pathname.slice("/console/".length);
  const file = assets.get(name) ?? (name.includes(".") ? undefined : assets.get("index.html"));
  const headers = {
    "content-security-policy": CONSOLE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-cache",
  };
  if (!file) {
    res.writeHead(404, { ...headers, "content-type": "text/plain; charset=utf-8" });
    res.end(assets.size === 0 ? "the console is not built (npm run build)\n" : "not found\n");
    return;
  }
  res.writeHead(200, { ...headers, "content-type": file.type, "content-length": String(file.body.length) });
  if (req.method === "HEAD") res.end();
  else res.end(file.body);
}
