// Review of issue 14: where DST starts at midnight (Asia/Beirut, America/Santiago, America/Havana...), the day that
// follows has no 00:00; its first instant is 01:00. The window of the day before must end there, not an hour early
// (it did: for that hour no window contained now, budget_exceeded named a reset in the past, and every Check
// re-formatted the date because the cached window never matched).
import { describe, expect, it } from "vitest";
import { periodWindow } from "../../src/domain/budgets.js";

describe("budget periods across a DST change at midnight", () => {
  it("Beirut, 29 March 2026: 28 March ends at 22:00 UTC (00:00 UTC+2 became 01:00 UTC+3)", () => {
    const now = Date.parse("2026-03-28T21:30:00Z"); // 23:30 in Beirut, still 28 March
    const w = periodWindow("day", "Asia/Beirut", now);
    expect(w.id).toBe("day:2026-03-28");
    expect(new Date(w.start).toISOString()).toBe("2026-03-27T22:00:00.000Z");
    expect(new Date(w.end!).toISOString()).toBe("2026-03-28T22:00:00.000Z");
    const next = periodWindow("day", "Asia/Beirut", w.end!);
    expect(next.id).toBe("day:2026-03-29");
    expect(next.start).toBe(w.end);
  });

  it("every window contains the instant it was asked for (zones with midnight DST changes, 2024-2026)", () => {
    const zones = ["Asia/Beirut", "America/Santiago", "America/Havana", "America/Asuncion", "Europe/London"];
    const bad: string[] = [];
    for (const zone of zones)
      for (let t = Date.UTC(2024, 0, 1); t < Date.UTC(2027, 0, 1); t += 1_800_000)
        for (const period of ["day", "week", "month"] as const) {
          const w = periodWindow(period, zone, t);
          if (!(w.start <= t && t < w.end!)) bad.push(`${zone} ${period} ${new Date(t).toISOString()}`);
        }
    expect(bad.slice(0, 5)).toEqual([]);
  });
});
