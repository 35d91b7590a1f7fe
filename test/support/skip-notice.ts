import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const SERVICES = [
  {
    name: "PostgreSQL",
    variable: "TOLLGATE_TEST_DATABASE_URL",
    example: "postgres://postgres@127.0.0.1:5432/test",
    uses: /describeWith\("postgres"|describeStores\(/,
  },
  {
    name: "Redis",
    variable: "TOLLGATE_TEST_REDIS_URL",
    example: "redis://127.0.0.1:6379",
    uses: /describeWith\("redis"/,
  },
] as const;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? testFiles(path) : entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

/**
 * Vitest global setup: says once per run (not once per test file) which suites skip for want of a service and how
 * to run them. Under CI nothing skips: describeWith fails instead.
 */
export default function skipNotice(): void {
  if (process.env.CI === "true" || process.env.CI === "1") return;
  const missing = SERVICES.filter((s) => !process.env[s.variable]);
  if (missing.length === 0) return;
  const root = join(import.meta.dirname, "..");
  const sources = testFiles(root).map((file) => ({ file: relative(root, file), text: readFileSync(file, "utf8") }));
  const lines = missing.map((s) => {
    const files = sources.filter((f) => s.uses.test(f.text)).map((f) => f.file);
    return `  ${s.name} (${files.length} files: ${files.join(", ")}): set ${s.variable}=${s.example}`;
  });
  console.log(`tollgate: skipping the suites that need a service not configured for this run:\n${lines.join("\n")}`);
}
