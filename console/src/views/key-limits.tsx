import { useState } from "preact/hooks";
import type { GetKeyLimitsResponse, Key, LimitWindow } from "../../../src/gen/tollgate/admin/v1/keys_pb.js";
import { api } from "../api.js";
import { count, parseUsd, usd } from "../format.js";
import { BUDGET_PERIODS } from "./budgets.js";
import { Field } from "../ui.js";

/** A key's own limits, as KeyService names them; 0 means "the plan's" (or none where the plan sets none). */
const LIMITS = [
  { field: "requestsPerMinute", label: "Requests/min", unit: "req/min", tokens: false, plan: true },
  { field: "tokensPerMinute", label: "Tokens/min", unit: "tok/min", tokens: true, plan: true },
  { field: "requestsPerDay", label: "Requests/day", unit: "req/day", tokens: false, plan: false },
  { field: "tokensPerDay", label: "Tokens/day", unit: "tok/day", tokens: true, plan: false },
  { field: "maxConcurrency", label: "Concurrent requests", unit: "concurrent", tokens: false, plan: false },
] as const;

type LimitField = (typeof LIMITS)[number]["field"];

/** What remains of each window the key has now, e.g. "3 of 5 req/min left (resets in 41 s)". */
export function LimitsNow(props: { limits: GetKeyLimitsResponse }) {
  const l = props.limits;
  const window = (w: LimitWindow | undefined, unit: string) =>
    w && w.limit > 0n
      ? [
          `${count(w.remaining)} of ${count(w.limit)} ${unit} left${w.resetSeconds > 0 ? ` (resets in ${w.resetSeconds} s)` : ""}`,
        ]
      : [];
  const parts = [
    ...window(l.requestsPerMinute, "req/min"),
    ...window(l.tokensPerMinute, "tok/min"),
    ...window(l.requestsPerDay, "req/day"),
    ...window(l.tokensPerDay, "tok/day"),
    ...(l.maxConcurrency > 0 ? [`${count(l.inFlight)} of ${count(l.maxConcurrency)} in flight`] : []),
  ];
  return (
    <span>
      {l.live ? "" : "Not visible to this admin process (it shares no limiter with the data plane). "}
      {parts.map((p) => (
        <span key={p} class="window">
          {p}
        </span>
      ))}
    </span>
  );
}

/** The key's limits in a line: its own values, "plan" for per-minute limits it leaves to the plan. */
export function LimitsSummary(props: { k: Key }) {
  const parts = LIMITS.flatMap((l) => {
    const value = props.k[l.field];
    if (value) return [`${count(value)} ${l.unit}`];
    return l.plan ? [`plan ${l.unit}`] : [];
  });
  return <span>{parts.join(" · ")}</span>;
}

/**
 * Edits a key's limits. Only changed fields are sent: an empty field is 0, which clears the key's own value (back to
 * the plan's), and an account may not clear an operator's; the API refuses what the token may not do.
 */
export function LimitsEditor(props: {
  k: Key;
  onDone: (saved: boolean) => void;
  run: (a: () => Promise<void>) => void;
}) {
  const [values, setValues] = useState<Record<LimitField, string>>(() => {
    const out = {} as Record<LimitField, string>;
    for (const l of LIMITS) out[l.field] = props.k[l.field] ? String(props.k[l.field]) : "";
    return out;
  });
  const [budget, setBudget] = useState(props.k.budgetNanoUsd > 0n ? usd(props.k.budgetNanoUsd, 2).slice(1) : "");
  const [period, setPeriod] = useState(props.k.budgetPeriod || "month");
  const save = () =>
    props.run(async () => {
      const changes: Record<string, number | bigint | string> = {};
      const cap = budget.trim() === "" ? 0n : parseUsd(budget.replace(/,/g, ""));
      if (cap === undefined) throw new Error("Budget: a dollar amount, e.g. 50 or 49.99, or empty for none");
      if (cap !== props.k.budgetNanoUsd) changes.budgetNanoUsd = cap;
      if (cap > 0n && period !== props.k.budgetPeriod) changes.budgetPeriod = period;
      for (const l of LIMITS) {
        const text = values[l.field].trim();
        if (!/^\d*$/.test(text)) throw new Error(`${l.label}: a whole number, or empty for the plan's`);
        const value = l.tokens ? BigInt(text || "0") : Number(text || "0");
        if (value !== props.k[l.field]) changes[l.field] = value;
      }
      await api.keys.updateKey({ keyId: props.k.id, ...changes });
      props.onDone(true);
    });
  return (
    <div class="limits-edit">
      {LIMITS.map((l) => (
        <Field key={l.field} label={l.label} hint={l.plan ? "empty: the plan's" : "empty: none"}>
          <input
            inputMode="numeric"
            value={values[l.field]}
            onInput={(e) => setValues({ ...values, [l.field]: e.currentTarget.value })}
          />
        </Field>
      ))}
      <Field label="Budget (USD)" hint="empty: none">
        <input inputMode="decimal" value={budget} onInput={(e) => setBudget(e.currentTarget.value)} />
      </Field>
      <Field label="Budget period">
        <select value={period} onChange={(e) => setPeriod(e.currentTarget.value)}>
          {BUDGET_PERIODS.map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
      </Field>
      <button type="button" class="primary" onClick={save}>
        Save limits
      </button>
      <button type="button" onClick={() => props.onDone(false)}>
        Cancel
      </button>
    </div>
  );
}
