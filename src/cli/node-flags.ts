/**
 * The node flags `tollgate serve` wants (README, Operations, "V8's memory reducer"). V8 reads them when it creates the
 * heap, so a process cannot set them for itself, and NODE_OPTIONS does not accept them: the image's entry point and
 * `npm start` pass them, and serve warns when they are missing. It imports nothing, so test helpers and benchmarks
 * can use it without loading the application.
 */
export const SERVE_NODE_FLAGS = ["--no-memory-reducer"] as const;

/** The flags of SERVE_NODE_FLAGS that node's own arguments (`process.execArgv`) lack; V8 reads "_" as "-". */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  const given = new Set(execArgv.map((arg) => arg.replaceAll("_", "-")));
  return SERVE_NODE_FLAGS.filter((flag) => !given.has(flag));
}
