// `npm run envoy:render`: regenerates envoy/envoy.yaml (production) and envoy/envoy.local.yaml (local development)
// with `tollgate envoy render` for the default catalogue and the default config. TOLLGATE_* variables of the
// calling shell are dropped so the committed files never depend on a developer's environment;
// test/contract/envoy-render.test.ts fails when the committed files differ from this output.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("TOLLGATE_")));
const catalogue = join(root, "catalogue/default.yaml");
for (const [file, flags] of [
  ["envoy/envoy.yaml", []],
  ["envoy/envoy.local.yaml", ["--local"]],
]) {
  execFileSync(
    process.execPath,
    ["--import", "tsx", "src/cli/main.ts", "envoy", "render", ...flags, "--catalogue", catalogue, "--out", file],
    { cwd: root, env, stdio: "inherit" },
  );
}
