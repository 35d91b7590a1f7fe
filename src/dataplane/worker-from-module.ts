import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * A worker thread running the module at `file`. Built, that is a .js file Node loads itself; run from source (vitest,
 * tsx) it is a .ts file, which a worker thread can load only through tsx's loader, registered by a small module
 * evaluated first.
 */
export function workerFromModule(file: URL, options: WorkerOptions = {}): Worker {
  if (!file.pathname.endsWith(".ts")) return new Worker(file, options);
  // tsx's ESM entry, from its own exports map (resolving through require would give the CommonJS one).
  const require = createRequire(import.meta.url);
  const manifest = require("tsx/package.json") as { exports: Record<string, { import: { default: string } }> };
  const tsx = pathToFileURL(
    join(dirname(require.resolve("tsx/package.json")), manifest.exports["./esm/api"]!.import.default),
  ).href;
  const code = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(file.href)}); })`;
  return new Worker(code, { ...options, eval: true });
}
