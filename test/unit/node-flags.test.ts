import { describe, expect, it } from "vitest";
import { missingNodeFlags, SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";

describe("the node flags serve wants", () => {
  it("are missing when node ran without them, and not when it ran with them in either spelling V8 reads", () => {
    expect(missingNodeFlags([])).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingNodeFlags(["--import", "tsx"])).toEqual(["--no-memory-reducer"]);
    expect(missingNodeFlags(["--no-memory-reducer", "--import", "tsx"])).toEqual([]);
    expect(missingNodeFlags(["--no_memory_reducer"])).toEqual([]);
  });
});
