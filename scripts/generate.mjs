// Generates protobuf-es code into src/gen (shipped) and test/gen (Envoy config types only tests read) from proto/
// (ours) and from the real Envoy API protos shipped in @grpc/grpc-js-xds (deps/envoy-api and what it imports). The
// Envoy protos are staged under build/protos first
// because the shipped validate.proto is older than the Envoy protos: it lacks StringRules.ignore_empty = 26 (and
// has CRLF line endings), without which envoy/config/core/v3/protocol.proto does not compile.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
const check = process.argv.includes("--check");
const staged = join(root, "build/protos/envoy");

rmSync(staged, { recursive: true, force: true });
mkdirSync(staged, { recursive: true });
for (const [from, dirs] of [
  ["envoy-api", ["envoy"]],
  ["xds", ["xds", "udpa"]],
  ["googleapis", ["google/api", "google/rpc"]],
  ["protoc-gen-validate", ["validate"]],
]) {
  for (const d of dirs) {
    const src = join(xdsDeps, from, d);
    if (existsSync(src)) cpSync(src, join(staged, d), { recursive: true, filter: (p) => !p.includes("/java") });
  }
}
const validatePath = join(staged, "validate/validate.proto");
let validate = readFileSync(validatePath, "utf8").replace(/\r\n/g, "\n");
if (!/ignore_empty\s*=\s*26/.test(validate)) {
  const anchor = /message StringRules \{\n/;
  if (!anchor.test(validate)) throw new Error("generate: StringRules not found in validate.proto; patch needs review");
  validate = validate.replace(
    anchor,
    "message StringRules {\n    // Added by scripts/generate.mjs: newer Envoy protos use it (protoc-gen-validate field 26).\n    optional bool ignore_empty = 26;\n\n",
  );
}
writeFileSync(validatePath, validate);

// Two templates: buf.gen.yaml writes what ships (src/gen), buf.gen.test.yaml what only tests read (test/gen).
// buf writes to <base>/<out>; --check generates into a scratch base and compares it with the committed trees.
const targets = [
  { template: "buf.gen.yaml", out: "src/gen" },
  { template: "buf.gen.test.yaml", out: "test/gen" },
];
const base = check ? mkdtempSync(join(tmpdir(), "tollgate-gen-")) : root;
for (const { template, out } of targets) {
  if (!check) rmSync(join(root, out), { recursive: true, force: true });
  execFileSync(join(root, "node_modules/.bin/buf"), ["generate", "--template", template, "-o", base], {
    cwd: root,
    stdio: "inherit",
  });
}
if (check) {
  const stale = targets.filter(({ out }) => {
    try {
      execFileSync("diff", ["-r", "-q", join(base, out), join(root, out)], { stdio: "inherit" });
      return false;
    } catch {
      return true;
    }
  });
  rmSync(base, { recursive: true, force: true });
  if (stale.length > 0) {
    console.error(
      `generate --check: ${stale.map((t) => t.out).join(" and ")} stale; run \`npm run generate\` and commit the result`,
    );
    process.exit(1);
  }
  console.log(`generate --check: ${targets.map((t) => t.out).join(" and ")} up to date`);
}
