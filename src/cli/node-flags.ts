/**
 * The node flags `tollgate serve` wants, and why (README, Operations, "V8 flags for serve"). V8 reads them when it
 * creates the heap, so a process cannot set them for itself, and NODE_OPTIONS does not accept them: the image's entry
 * point and `npm start` pass them, and serve warns when they are missing. It imports nothing, so test helpers and
 * benchmarks can use it without loading the application.
 */

/** The floor serve wants under V8's old-generation limit, in MB. */
export const OLD_SPACE_FLOOR_MB = 256;

export const SERVE_NODE_FLAGS = ["--no-memory-reducer", `--initial-old-space-size=${OLD_SPACE_FLOOR_MB}`] as const;

/** Each flag of SERVE_NODE_FLAGS by the name V8 files it under, and whether a value V8 read for it will do. */
const WANTED: ReadonlyArray<{ flag: string; name: string; holds(value: string | boolean): boolean }> = [
  { flag: SERVE_NODE_FLAGS[0], name: "memory-reducer", holds: (value) => value === false },
  // A larger floor (an operator's) will do; a smaller one, or 0 (no floor), will not.
  { flag: SERVE_NODE_FLAGS[1], name: "initial-old-space-size", holds: (value) => Number(value) >= OLD_SPACE_FLOOR_MB },
];

/**
 * The flags of SERVE_NODE_FLAGS that node's own arguments (`process.execArgv`) do not give as serve wants them. Read
 * as V8 reads flags: one or two leading dashes, "_" as "-", "--no-x" and "--nox" as x off, and the last occurrence of
 * a flag wins.
 */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  const read = new Map<string, string | boolean>();
  for (const arg of execArgv) {
    const match = /^--?([^=]+)(?:=(.*))?$/.exec(arg.replaceAll("_", "-"));
    if (!match) continue;
    const [, name, value] = match as unknown as [string, string, string | undefined];
    const negated = WANTED.find((w) => name === `no-${w.name}` || name === `no${w.name}`);
    if (negated && value === undefined) read.set(negated.name, false);
    else read.set(name, value ?? true);
  }
  return WANTED.filter((w) => !read.has(w.name) || !w.holds(read.get(w.name)!)).map((w) => w.flag);
}

/**
 * V8 keeps the floor to at most half the old generation's maximum, which node sizes from the memory the process may
 * use (a container's limit): the floor in MB this process really has, when that is less than serve wants, else
 * undefined. `heapSizeLimit` is `v8.getHeapStatistics().heap_size_limit` (the maximum plus the young generation's
 * semi-spaces, 48 MB by default).
 */
export function clampedOldSpaceFloorMb(heapSizeLimit: number): number | undefined {
  const floor = Math.floor((heapSizeLimit / 2 ** 20 - 48) / 2);
  return floor < OLD_SPACE_FLOOR_MB ? floor : undefined;
}
