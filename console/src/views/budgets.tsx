import { useState } from "preact/hooks";
import type { Account } from "../../../src/gen/tollgate/admin/v1/accounts_pb.js";
import type { BudgetStatus } from "../../../src/gen/tollgate/admin/v1/keys_pb.js";
import { api } from "../api.js";
import { parseUsd, usd, when } from "../format.js";
import { Field } from "../ui.js";

/** The periods a spend cap may have (in the account's time zone; lifetime never resets). */
export const BUDGET_PERIODS = ["day", "week", "month", "lifetime"];

/** A cap in a line: "$5.00 per month". */
export function budgetText(limit: bigint, period: string): string {
  if (limit === 0n) return "none";
  return period === "lifetime" ? `${usd(limit)} lifetime` : `${usd(limit)} per ${period}`;
}

/** A budget's state now: spent and held against the cap in its period, and when the period resets. */
export function BudgetState(props: { status?: BudgetStatus; limit: bigint; period: string }) {
  const s = props.status;
  if (!s) return <span>{props.limit > 0n ? budgetText(props.limit, props.period) : "no budget"}</span>;
  return (
    <span>
      {usd(s.spentNanoUsd, 2)} spent{s.heldNanoUsd > 0n ? ` + ${usd(s.heldNanoUsd, 2)} in flight` : ""} of{" "}
      {budgetText(s.limitNanoUsd, s.period)}
      {s.resetsAt ? ` · resets ${when(s.resetsAt)}` : ""}
    </span>
  );
}

/** The account's spend cap over all its keys and the time zone of budget periods (operators set it). */
export function AccountBudgetForm(props: {
  account: Account;
  run: (a: () => Promise<void>) => void;
  onSaved: () => void;
}) {
  const a = props.account;
  const [amount, setAmount] = useState(a.budgetNanoUsd > 0n ? usd(a.budgetNanoUsd, 2).slice(1).replace(/,/g, "") : "");
  const [period, setPeriod] = useState(a.budgetPeriod || "month");
  const [timeZone, setTimeZone] = useState(a.timeZone);
  const save = (e: Event) => {
    e.preventDefault();
    props.run(async () => {
      const budget = amount.trim() === "" ? 0n : parseUsd(amount);
      if (budget === undefined) throw new Error("budget: a dollar amount, e.g. 50 or 49.99, or empty for none");
      await api.accounts.setAccountBudget({
        accountId: a.id,
        budgetNanoUsd: budget !== a.budgetNanoUsd ? budget : undefined,
        budgetPeriod: budget > 0n && period !== a.budgetPeriod ? period : undefined,
        timeZone: timeZone !== a.timeZone ? timeZone.trim() : undefined,
      });
      props.onSaved();
    });
  };
  return (
    <form class="inline" onSubmit={save} aria-label="Account budget">
      <Field label="Account budget (USD)" hint="empty: none">
        <input inputMode="decimal" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
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
      <Field label="Time zone of periods" hint='IANA name, e.g. "Europe/Paris"; empty: UTC'>
        <input value={timeZone} onInput={(e) => setTimeZone(e.currentTarget.value)} />
      </Field>
      <button type="submit" class="primary">
        Save budget
      </button>
    </form>
  );
}
