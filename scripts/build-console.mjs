// Builds the web console (console/) into dist/console: one JavaScript bundle (Preact, uPlot, connect-web and the
// admin API's generated descriptors from src/gen), one stylesheet and the page, with nothing loaded from elsewhere.
// Run by `npm run build`; prints the bundle's gzipped size. `--check-size N` fails when the gzipped JS and CSS
// together exceed N bytes.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const out = join(root, "dist/console");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(root, "console/src/main.tsx") },
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
  // connect-web and protobuf-es are browser-ready; nothing of node's may end up in the bundle.
  platform: "browser",
});
writeFileSync(
  join(out, "app.css"),
  readFileSync(join(root, "node_modules/uplot/dist/uPlot.min.css"), "utf8") +
    "\n" +
    readFileSync(join(root, "console/styles.css"), "utf8"),
);
copyFileSync(join(root, "console/index.html"), join(out, "index.html"));

const sizes = ["app.js", "app.css"].map((name) => {
  const body = readFileSync(join(out, name));
  return { name, raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
});
const total = sizes.reduce((sum, s) => sum + s.gzip, 0);
console.log(
  `console: ${sizes.map((s) => `${s.name} ${(s.raw / 1024).toFixed(1)} KiB (${(s.gzip / 1024).toFixed(1)} KiB gzipped)`).join(", ")}`,
);
const limitAt = process.argv.indexOf("--check-size");
if (limitAt > 0 && total > Number(process.argv[limitAt + 1])) {
  console.error(`console: ${total} bytes gzipped is over the budget of ${process.argv[limitAt + 1]}`);
  process.exit(1);
}
