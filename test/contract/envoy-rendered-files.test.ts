// envoy/envoy.yaml and envoy/envoy.local.yaml are `tollgate envoy render`'s output for the default catalogue and
// the default config, byte for byte: edit the renderer or the catalogue, never the files, and regenerate them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig, PACKAGE_ROOT } from "../../src/config/config.js";
import { renderEnvoy } from "../../src/dataplane/envoy-config/profile.js";

const REGENERATE = "npm run envoy:render";
/** The default configuration: nothing from the test's environment (TOLLGATE_*) or a config file. */
const config = () => loadConfig({ env: {} });

describe("the committed bootstraps are the renderer's output for the default catalogue", () => {
  for (const [file, profile, command] of [
    ["envoy.yaml", "production", "npx tollgate envoy render --out envoy/envoy.yaml"],
    ["envoy.local.yaml", "local", "npx tollgate envoy render --local --out envoy/envoy.local.yaml"],
  ] as const) {
    it(`envoy/${file} (${profile})`, () => {
      const committed = readFileSync(join(PACKAGE_ROOT, "envoy", file), "utf8");
      const rendered = renderEnvoy({ profile, config: config() });
      expect(
        rendered,
        `envoy/${file} is not what \`tollgate envoy render\` writes for the default catalogue. Edit the renderer ` +
          `(src/dataplane/envoy-config/) or the catalogue, not the file, then regenerate both files with \`${REGENERATE}\` ` +
          `(or \`${command}\`) and commit them.`,
      ).toBe(committed);
    });
  }
});
