import { describe, expect, it } from "vitest";
import { clampedOldSpaceFloorMb, missingNodeFlags, SERVE_NODE_FLAGS } from "../../src/cli/node-flags.js";

const [NO_REDUCER, FLOOR] = SERVE_NODE_FLAGS;

describe("the node flags serve wants", () => {
  it("are missing when node ran without them, and not when it ran with them in either spelling V8 reads", () => {
    expect(missingNodeFlags([])).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingNodeFlags(["--import", "tsx"])).toEqual([NO_REDUCER, FLOOR]);
    expect(missingNodeFlags([NO_REDUCER, "--import", "tsx"])).toEqual([FLOOR]);
    expect(missingNodeFlags([...SERVE_NODE_FLAGS, "--import", "tsx"])).toEqual([]);
    expect(missingNodeFlags(["--no_memory_reducer", "--initial_old_space_size=256"])).toEqual([]);
    // V8 also reads "--nox" as "--no-x", and one leading dash as two.
    expect(missingNodeFlags(["--nomemory-reducer", "-initial-old-space-size=256"])).toEqual([]);
  });

  it("count a larger floor as given, and a smaller one or none (0) as missing", () => {
    expect(missingNodeFlags([NO_REDUCER, "--initial-old-space-size=1024"])).toEqual([]);
    expect(missingNodeFlags([NO_REDUCER, "--initial-old-space-size=64"])).toEqual([FLOOR]);
    expect(missingNodeFlags([NO_REDUCER, "--initial-old-space-size=0"])).toEqual([FLOOR]);
    // A different flag that only starts with the same letters is not it.
    expect(missingNodeFlags([NO_REDUCER, "--initial-old-space-size-x=512"])).toEqual([FLOOR]);
  });

  it("read the last occurrence of a flag, as V8 does", () => {
    expect(missingNodeFlags([...SERVE_NODE_FLAGS, "--initial-old-space-size=64"])).toEqual([FLOOR]);
    expect(missingNodeFlags(["--initial-old-space-size=64", ...SERVE_NODE_FLAGS])).toEqual([]);
    expect(missingNodeFlags([...SERVE_NODE_FLAGS, "--memory-reducer"])).toEqual([NO_REDUCER]);
    expect(missingNodeFlags(["--memory-reducer", ...SERVE_NODE_FLAGS])).toEqual([]);
  });

  it("tell when V8 lowered the floor to half the old generation's maximum (a process given little memory)", () => {
    const heapLimit = (maxOldMb: number) => (maxOldMb + 48) * 2 ** 20;
    // node's default on this machine (4 GiB), and a maximum set to 1024 MB: the floor holds.
    expect(clampedOldSpaceFloorMb(heapLimit(4096))).toBeUndefined();
    expect(clampedOldSpaceFloorMb(heapLimit(1024))).toBeUndefined();
    expect(clampedOldSpaceFloorMb(heapLimit(512))).toBeUndefined();
    // A container of about 700 MB: node sizes the maximum at about 350 MB, so the floor is 175 MB.
    expect(clampedOldSpaceFloorMb(heapLimit(350))).toBe(175);
  });
});
