import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/sql/database.js";
import { jsonList, jsonRows } from "../../src/adapters/sql/ledger-store.js";

describe("JSON row parameters [sqlite]", () => {
  it("jsonRows and jsonList round-trip any text, 64-bit integers, booleans and nulls through json_each", async () => {
    const db = await openDatabase("sqlite::memory:");
    try {
      const texts = ["", "NULL", "null", 'a"b', "a\\b", "\\", '"', "[x,y]", " spaced ", "é€😀", "a\u0000b", "\n\t"];
      const listed = (await db.knex.raw("select value as v from json_each(?)", [jsonList(texts)])) as Array<{
        v: string;
      }>;
      expect(listed.map((r) => r.v)).toEqual(texts);
      const rows = (await db.knex.raw(
        "select j.value ->> 0 as n, j.value ->> 1 as b, j.value ->> 2 as t, typeof(j.value ->> 0) as type from json_each(?) as j",
        [
          jsonRows([
            [9_223_372_036_854_775_807n, true, null],
            [-9_223_372_036_854_775_808n, false, "x"],
            [9_007_199_254_740_993n, true, 'q"'],
          ]),
        ],
      )) as Array<Record<string, unknown>>;
      expect(rows).toEqual([
        { n: 9_223_372_036_854_775_807n, b: 1n, t: null, type: "integer" },
        { n: -9_223_372_036_854_775_808n, b: 0n, t: "x", type: "integer" },
        { n: 9_007_199_254_740_993n, b: 1n, t: 'q"', type: "integer" },
      ]);
    } finally {
      await db.close();
    }
  });

  it("a lone surrogate is stored as the same bytes as a bound text parameter of it, so lookups and inserts agree", async () => {
    const db = await openDatabase("sqlite::memory:");
    try {
      const lone = ["a\ud800b", "\udc00", "x\ud83d"];
      const bound = await Promise.all(
        lone.map(async (s) => ((await db.knex.raw("select hex(?) as h", [s])) as Array<{ h: string }>)[0]!.h),
      );
      const listed = (await db.knex.raw("select hex(value) as h from json_each(?)", [jsonList(lone)])) as Array<{
        h: string;
      }>;
      expect(listed.map((r) => r.h)).toEqual(bound);
      expect(bound).toEqual(["61EDA08062", "EDB080", "78EDA0BD"]);
    } finally {
      await db.close();
    }
  });
});
