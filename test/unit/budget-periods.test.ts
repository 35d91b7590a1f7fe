import { describe, expect, it } from "vitest";
import { isTimeZone, periodWindow, spendPeriods } from "../../src/domain/budgets.js";

const at = (iso: string) => Date.parse(iso);

describe("budget periods", () => {
  it("a UTC day runs from midnight to midnight and rolls over at the next one", () => {
    const w = periodWindow("day", null, at("2026-12-01T23:59:59.999Z"));
    expect(w).toEqual({ id: "day:2026-12-01", start: at("2026-12-01T00:00:00Z"), end: at("2026-12-02T00:00:00Z") });
    expect(periodWindow("day", null, at("2026-12-02T00:00:00Z")).id).toBe("day:2026-12-02");
  });

  it("an account's time zone moves the boundaries (India is UTC+5:30)", () => {
    const w = periodWindow("day", "Asia/Kolkata", at("2026-12-01T20:00:00Z"));
    expect(w).toEqual({ id: "day:2026-12-02", start: at("2026-12-01T18:30:00Z"), end: at("2026-12-02T18:30:00Z") });
  });

  it("a day with a DST change lasts 25 hours (New York, 1 November 2026)", () => {
    const w = periodWindow("day", "America/New_York", at("2026-11-01T12:00:00Z"));
    expect(w.start).toBe(at("2026-11-01T04:00:00Z"));
    expect(w.end).toBe(at("2026-11-02T05:00:00Z"));
  });

  it("weeks start on Monday; months on the 1st; lifetime never resets", () => {
    // 2026-12-03 is a Thursday.
    expect(periodWindow("week", null, at("2026-12-03T10:00:00Z"))).toEqual({
      id: "week:2026-11-30",
      start: at("2026-11-30T00:00:00Z"),
      end: at("2026-12-07T00:00:00Z"),
    });
    expect(periodWindow("month", "Europe/Paris", at("2026-12-31T23:30:00Z"))).toEqual({
      id: "month:2027-01",
      start: at("2026-12-31T23:00:00Z"),
      end: at("2027-01-31T23:00:00Z"),
    });
    expect(periodWindow("lifetime", null, 0)).toEqual({ id: "lifetime", start: 0, end: null });
    expect(spendPeriods(null, at("2026-12-03T10:00:00Z"))).toEqual([
      "day:2026-12-03",
      "week:2026-11-30",
      "month:2026-12",
      "lifetime",
    ]);
  });

  it("knows IANA zones and refuses anything else", () => {
    expect(isTimeZone("Europe/Paris")).toBe(true);
    expect(isTimeZone("UTC")).toBe(true);
    expect(isTimeZone("Mars/Olympus")).toBe(false);
    expect(isTimeZone("")).toBe(false);
  });
});
