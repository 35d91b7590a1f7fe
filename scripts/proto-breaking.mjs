// `npm run proto:breaking [-- REF]`: fails when proto/ (our admin API) breaks wire or source compatibility (buf's
// FILE rules, buf.yaml) against REF, by default the previous commit (HEAD~1: in CI, the main this change lands on).
// Skips, saying why, when there is nothing to compare with: REF missing (first commit, shallow clone) or no proto/ in
// it. New files and new fields are never breaking, so the commit that first adds the admin API passes.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const ref = process.argv[2] ?? process.env.TOLLGATE_BREAKING_AGAINST ?? "HEAD~1";
const git = (...args) =>
  execFileSync("git", args, { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
    .toString()
    .trim();

let commit;
try {
  commit = git("rev-parse", "--verify", "--quiet", `${ref}^{commit}`);
  git("cat-file", "-e", `${commit}:proto`);
} catch {
  console.log(
    `proto:breaking: skipped: ${ref} ${commit ? "has no proto/" : "does not exist here (first commit or shallow clone)"}`,
  );
  process.exit(0);
}
try {
  execFileSync(
    join(root, "node_modules/.bin/buf"),
    ["breaking", "proto", "--against", `.git#ref=${commit},subdir=proto`],
    { cwd: root, stdio: "inherit" },
  );
  console.log(`proto:breaking: proto/ is compatible with ${ref} (${commit.slice(0, 12)})`);
} catch {
  console.error(`proto:breaking: proto/ breaks compatibility with ${ref} (${commit.slice(0, 12)}); see above`);
  process.exit(1);
}
