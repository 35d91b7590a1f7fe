/**
 * The node flags `tollgate serve` wants (README, Operations, "V8 flags for serve"). V8 reads them when it creates the
 * heap, so a process cannot set them for itself, and NODE_OPTIONS does not accept them: the image's entry point and
 * `npm start` pass them, and serve warns when they are missing. It imports nothing, so test helpers and benchmarks
 * can use it without loading the application.
 *
 * `--initial-old-space-size=256` makes 256 MB the floor of V8's old-generation limit (V8 skips full collections below
 * it). V8 counts the ArrayBuffer memory allocated since the last full collection against that limit, and above a
 * heap of tens of MB (authz holds the tokenizer) its dynamic limit left less headroom than a few 1 MiB Checks
 * allocate between young-generation collections: authz then ran full collections back to back, several a second.
 */
export const SERVE_NODE_FLAGS = ["--no-memory-reducer", "--initial-old-space-size=256"] as const;

/**
 * The flags of SERVE_NODE_FLAGS that node's own arguments (`process.execArgv`) lack, by name: a flag given with
 * another value (an operator's larger floor) is not missing. V8 reads "_" as "-".
 */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  const name = (flag: string) => flag.replaceAll("_", "-").split("=", 1)[0];
  const given = new Set(execArgv.map(name));
  return SERVE_NODE_FLAGS.filter((flag) => !given.has(name(flag)));
}
