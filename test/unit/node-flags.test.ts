import { describe, expect, it } from "vitest";
import { missingNodeFlags, SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";

describe("the node flags serve wants", () => {
  it("are missing when node ran without them, and not when it ran with them in either spelling V8 reads", () => {
    expect(missingNodeFlags([])).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingNodeFlags(["--import", "tsx"])).toEqual(["--no-memory-reducer", "--initial-old-space-size=256"]);
    expect(missingNodeFlags(["--no-memory-reducer", "--import", "tsx"])).toEqual(["--initial-old-space-size=256"]);
    expect(missingNodeFlags([...SERVE_NODE_FLAGS, "--import", "tsx"])).toEqual([]);
    expect(missingNodeFlags(["--no_memory_reducer", "--initial_old_space_size=256"])).toEqual([]);
  });

  it("count a flag given with another value as given (an operator's larger floor)", () => {
    expect(missingNodeFlags(["--no-memory-reducer", "--initial-old-space-size=1024"])).toEqual([]);
    // A different flag that only starts with the same letters is not it.
    expect(missingNodeFlags(["--no-memory-reducer", "--initial-old-space-size-x=1"])).toEqual([
      "--initial-old-space-size=256",
    ]);
  });
});
