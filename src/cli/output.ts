/** Where the CLI writes: results (table or JSON), informational lines, and errors. */
export interface Output {
  json: boolean;
  /** A command's result: JSON when --json, else the human rendering. */
  result(value: unknown, human: () => string): void;
  info(line: string): void;
  /** An error: `{"error":{"code","message"}}` on stderr with --json, else the line. */
  error(line: string, code: string, message: string): void;
}

/** JSON that can hold BigInt (money) as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
}

/** Output to the process's stdout and stderr. */
export function createConsoleOutput(): Output {
  return {
    json: false,
    result(value, human) {
      process.stdout.write((this.json ? toJson(value) : human()) + "\n");
    },
    info(line) {
      // Informational lines go to stderr under --json so stdout stays parseable.
      (this.json ? process.stderr : process.stdout).write(line + "\n");
    },
    error(line, code, message) {
      process.stderr.write((this.json ? JSON.stringify({ error: { code, message } }) : line) + "\n");
    },
  };
}

/** Renders rows as an aligned text table. */
export function printTable(rows: ReadonlyArray<Record<string, unknown>>): string {
  if (rows.length === 0) return "(none)";
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((row) => columns.map((c) => String(row[c] ?? "")));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n");
}
