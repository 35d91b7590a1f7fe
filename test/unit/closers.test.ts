import { describe, expect, it } from "vitest";
import { createClosers } from "../../src/app/closers.js";

describe("closers", () => {
  it("close the parts last started first", async () => {
    const closers = createClosers();
    const closed: string[] = [];
    for (const name of ["redis", "database", "meter", "authz"]) closers.add(name, async () => void closed.push(name));
    await closers.closeAll();
    expect(closed).toEqual(["authz", "meter", "database", "redis"]);
  });

  it("keep closing after a closer fails, then reject naming the first failure", async () => {
    const closers = createClosers();
    const closed: string[] = [];
    closers.add("database", () => void closed.push("database"));
    closers.add("meter", () => {
      throw new Error("meter stuck");
    });
    closers.add("authz", async () => {
      throw new Error("authz stuck");
    });
    const failure = await closers.closeAll().then(
      () => new Error("closeAll resolved"),
      (error: Error) => error,
    );
    expect(failure.message).toBe("closing authz failed: authz stuck");
    expect((failure.cause as Error).message).toBe("authz stuck");
    expect(closed).toEqual(["database"]);
  });

  it("close each part once, however often closeAll runs", async () => {
    const closers = createClosers();
    let closes = 0;
    closers.add("database", () => void closes++);
    await closers.closeAll();
    await closers.closeAll();
    expect(closes).toBe(1);
  });
});
