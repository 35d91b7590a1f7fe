import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const SRC = join(ROOT, "src");

/** Every .ts file under a folder of src. */
function files(folder: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts")) out.push(path);
    }
  };
  walk(join(SRC, folder));
  return out;
}

/** The module specifiers a file imports or re-exports, statically or dynamically (type-only imports included). */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?["']([^"']+)["']/g,
    /\bexport\s+(?:type\s+)?[^'";]*?\s+from\s+["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) found.push(m[1]!);
  return found;
}

const DRIVERS = /^(knex|pg|better-sqlite3)(\/.*)?$/;

/** Why `specifier` (imported by `file`) breaks the layering, or undefined when it does not. */
function violation(file: string, specifier: string): string | undefined {
  if (DRIVERS.test(specifier)) return `imports the SQL driver "${specifier}"`;
  if (!specifier.startsWith(".")) return undefined;
  const target = relative(SRC, resolve(dirname(file), specifier));
  if (target.startsWith(join("adapters", "sql")))
    return `imports ${target} (only the composition root in src/app wires adapters)`;
  return undefined;
}

/**
 * The admin API, the CLI and the data plane reach storage only through the use cases and ports: none of them
 * imports knex, pg, better-sqlite3 or src/adapters/sql. Only src/app's composition root (stores.ts,
 * control-plane.ts) wires adapters.
 */
describe("architecture: no SQL outside the adapters and the composition root", () => {
  it("finds the imports it checks (the scanner sees real import lines)", () => {
    expect(
      specifiers(
        `import type { Knex } from "knex";\nimport { a } from "../adapters/sql/database.js";\nexport { b } from "./x.js";\nconst m = await import("pg");`,
      ),
    ).toEqual(["knex", "../adapters/sql/database.js", "./x.js", "pg"]);
    expect(violation(join(SRC, "admin", "x.ts"), "../adapters/sql/database.js")).toMatch(/adapters\/sql/);
    expect(violation(join(SRC, "admin", "x.ts"), "knex")).toMatch(/driver/);
    expect(violation(join(SRC, "admin", "x.ts"), "../app/stores.js")).toBeUndefined();
  });

  for (const folder of ["admin", "cli", "dataplane"]) {
    it(`src/${folder} imports no SQL driver and nothing from src/adapters/sql`, () => {
      const found: string[] = [];
      for (const file of files(folder)) {
        for (const specifier of specifiers(readFileSync(file, "utf8"))) {
          const why = violation(file, specifier);
          if (why) found.push(`${relative(ROOT, file)} ${why}`);
        }
      }
      expect(found).toEqual([]);
    });
  }

  it("the SQL stores' interfaces (ports) are declared with the domain, not in src/adapters/sql", () => {
    const found: string[] = [];
    for (const file of files(join("adapters", "sql"))) {
      for (const m of readFileSync(file, "utf8").matchAll(/^export interface (\w*(Store|Repository))\b/gm))
        found.push(`${relative(ROOT, file)} declares ${m[1]}`);
    }
    expect(found).toEqual([]);
  });

  it("src/domain is pure: no drivers, no adapters, no generated code, no transport", () => {
    const found: string[] = [];
    for (const file of files("domain")) {
      for (const specifier of specifiers(readFileSync(file, "utf8"))) {
        if (
          DRIVERS.test(specifier) ||
          /^(ioredis|@grpc\/|@connectrpc\/)/.test(specifier) ||
          /\/(adapters|gen|admin|app)\//.test(specifier)
        )
          found.push(`${relative(ROOT, file)} imports ${specifier}`);
      }
    }
    expect(found).toEqual([]);
  });

  it("src/contract imports nothing: plain names that the domain, the data plane and the edge all share", () => {
    const found: string[] = [];
    for (const file of files("contract"))
      for (const specifier of specifiers(readFileSync(file, "utf8")))
        found.push(`${relative(ROOT, file)} imports ${specifier}`);
    expect(files("contract").length).toBeGreaterThan(0);
    expect(found).toEqual([]);
  });
});
