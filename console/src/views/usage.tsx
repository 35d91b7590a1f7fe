import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { useMemo, useState } from "preact/hooks";
import { type UsageAggregate, UsageGrouping } from "../../../src/gen/tollgate/admin/v1/usage_pb.js";
import { api, downloadUsageCsv } from "../api.js";
import { type ChartSeries, DailyChart } from "../chart.js";
import { count, usd, usdForChart } from "../format.js";
import { Alert, Field, Section, useAction, useLoad } from "../ui.js";

const RANGES = [
  { label: "Last 7 days", days: 7 },
  { label: "Last 30 days", days: 30 },
  { label: "Last 90 days", days: 90 },
];
const DAY_MS = 86_400_000;

/** The UTC days from `days - 1` days ago to today, as YYYY-MM-DD. */
function dayRange(days: number, now: number): string[] {
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  return Array.from({ length: days }, (_, i) => new Date(today - (days - 1 - i) * DAY_MS).toISOString().slice(0, 10));
}

/** One series per key or model: `pick` of each day's aggregate, null where the group had none that day. */
function seriesOf(
  rows: UsageAggregate[],
  days: string[],
  group: (r: UsageAggregate) => string,
  label: (g: string) => string,
  pick: (r: UsageAggregate) => number,
): ChartSeries[] {
  const byGroup = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const g = byGroup.get(group(r)) ?? new Map<string, number>();
    g.set(r.day, (g.get(r.day) ?? 0) + pick(r));
    byGroup.set(group(r), g);
  }
  return [...byGroup.entries()].map(([g, values]) => ({
    label: label(g),
    values: days.map((d) => values.get(d) ?? 0),
  }));
}

const formatUsd = (v: number) => `$${v < 1 ? v.toPrecision(2) : v.toFixed(2)}`;
const formatTokens = (v: number) =>
  v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : String(v);

/** The charts' numbers as a table, newest day first (also what screen readers and keyboard users read). */
function UsageTable(props: { rows: UsageAggregate[]; by: "key" | "model"; label: (r: UsageAggregate) => string }) {
  const { rows, by, label } = props;
  return (
    <table data-testid="usage-table">
      <caption class="sr-only">Usage per day and {by}</caption>
      <thead>
        <tr>
          <th scope="col">Day (UTC)</th>
          <th scope="col">{by === "key" ? "Key" : "Model"}</th>
          <th scope="col" class="num">
            Requests
          </th>
          <th scope="col" class="num">
            Prompt tokens
          </th>
          <th scope="col" class="num">
            Completion tokens
          </th>
          <th scope="col" class="num">
            Spend
          </th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={`${r.day}/${r.keyId}/${r.model}`}>
            <td>{r.day}</td>
            <td>{label(r)}</td>
            <td class="num">{count(r.requests)}</td>
            <td class="num">{count(r.promptTokens)}</td>
            <td class="num">{count(r.completionTokens)}</td>
            <td class="num">
              {usd(r.costNanoUsd, 6)}
              {r.estimatedRequests > 0n ? " (part estimated)" : ""}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Spend and tokens per day by key or by model (charts), the same numbers in a table, and the CSV export. */
export function Usage(props: { accountId: string }) {
  const [range, setRange] = useState(7);
  const [by, setBy] = useState<"key" | "model">("key");
  const download = useAction();
  const usage = useLoad(async () => {
    const now = Date.now();
    const days = dayRange(range, now);
    const filter = { accountId: props.accountId, startTime: timestampFromMs(Date.parse(`${days[0]}T00:00:00Z`)) };
    const group = by === "key" ? UsageGrouping.KEY : UsageGrouping.MODEL;
    const [summary, keys] = await Promise.all([
      api.usage.summarizeUsage({ filter, groupBy: [UsageGrouping.DAY, group] }),
      api.keys.listKeys({ accountId: props.accountId, pageSize: 1000 }),
    ]);
    const names = new Map(keys.keys.map((k) => [k.id, k.name || k.displayPrefix]));
    return { days, rows: summary.aggregates, names, startMs: Date.parse(`${days[0]}T00:00:00Z`) };
  }, [props.accountId, range, by]);

  const charts = useMemo(() => {
    if (!usage.data) return undefined;
    const { rows, days, names } = usage.data;
    const group = (r: UsageAggregate) => (by === "key" ? r.keyId : r.model);
    const label = (g: string) => (by === "key" ? (names.get(g) ?? g) : g);
    return {
      spend: seriesOf(rows, days, group, label, (r) => usdForChart(r.costNanoUsd)),
      tokens: seriesOf(rows, days, group, label, (r) => Number(r.promptTokens + r.completionTokens)),
    };
  }, [usage.data, by]);

  const rows = [...(usage.data?.rows ?? [])].sort((a, b) => b.day.localeCompare(a.day));
  const label = (r: UsageAggregate) => (by === "key" ? (usage.data?.names.get(r.keyId) ?? r.keyId) : r.model);
  return (
    <>
      <Alert message={usage.error ?? download.error} />
      <Section
        title="Spend and tokens per day"
        actions={
          <form class="inline" onSubmit={(e) => e.preventDefault()}>
            <Field label="Range">
              <select value={String(range)} onChange={(e) => setRange(Number(e.currentTarget.value))}>
                {RANGES.map((r) => (
                  <option key={r.days} value={String(r.days)}>
                    {r.label}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Group by">
              <select value={by} onChange={(e) => setBy(e.currentTarget.value as "key" | "model")}>
                <option value="key">Key</option>
                <option value="model">Model</option>
              </select>
            </Field>
            <button
              type="button"
              disabled={download.busy || !usage.data}
              onClick={() =>
                void download.run(() =>
                  downloadUsageCsv({
                    account_id: props.accountId,
                    start_time: String(usage.data!.startMs),
                  }),
                )
              }
            >
              Export CSV
            </button>
          </form>
        }
      >
        {charts && usage.data ? (
          <div class="charts">
            <DailyChart
              title={`Spend per day by ${by} (USD)`}
              days={usage.data.days}
              series={charts.spend}
              format={formatUsd}
              testId="spend-chart"
            />
            <DailyChart
              title={`Tokens per day by ${by}`}
              days={usage.data.days}
              series={charts.tokens}
              format={formatTokens}
              testId="tokens-chart"
            />
          </div>
        ) : (
          <p>Loading…</p>
        )}
        <UsageTable rows={rows} by={by} label={label} />
        {usage.data && rows.length === 0 ? <p>No usage in this range.</p> : null}
      </Section>
    </>
  );
}
