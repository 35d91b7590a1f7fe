import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

/** One line of a chart: its label and a value per day (null where it has none). */
export interface ChartSeries {
  label: string;
  values: Array<number | null>;
}

/** "Dec 1" for a UTC midnight in epoch seconds. */
function utcDay(seconds: number): string {
  return new Date(seconds * 1000).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

/** Colours that keep at least 3:1 contrast against the white plot background (WCAG non-text contrast). */
const PALETTE = ["#1f5fbf", "#b3261e", "#1b7a3d", "#8a4fb3", "#a15c00", "#0b7285", "#5c5f66", "#c2255c"];

/**
 * A daily line chart (uPlot, canvas). The canvas is described by its aria-label; the table under each chart holds
 * the same numbers for screen readers and keyboard users.
 */
export function DailyChart(props: {
  title: string;
  days: string[];
  series: ChartSeries[];
  format: (value: number) => string;
  testId: string;
}) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const xs = props.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    const width = Math.max(320, Math.min(960, el.clientWidth || 720));
    const plot = new uPlot(
      {
        width,
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: { x: { time: true } },
        axes: [
          // One tick per day at most, labelled with the date (the data are daily totals).
          { incrs: [86_400, 7 * 86_400, 28 * 86_400], values: (_u, ticks) => ticks.map((t) => utcDay(t)) },
          { values: (_u, ticks) => ticks.map((t) => props.format(t)), size: 70 },
        ],
        series: [
          { label: "Day (UTC)" },
          ...props.series.map((s, i) => ({
            label: s.label,
            stroke: PALETTE[i % PALETTE.length],
            width: 2,
            points: { show: true, size: 6 },
            value: (_u: uPlot, v: number | null) => (v === null ? "—" : props.format(v)),
          })),
        ],
      },
      [xs, ...props.series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    return () => plot.destroy();
  }, [props.days, props.series, props.format]);
  const summary = `${props.title}: ${props.series.length} series over ${props.days.length} days (the table below lists every value)`;
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={host} role="img" aria-label={summary} data-testid={props.testId} />
    </figure>
  );
}
