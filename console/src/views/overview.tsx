import { api } from "../api.js";
import { usd, when } from "../format.js";
import { Alert, Section, useAction, useLoad } from "../ui.js";
import { AccountBudgetForm, budgetText } from "./budgets.js";

const KIND_LABELS: Record<string, string> = {
  top_up: "Top-up (credit)",
  platform_fee: "Platform fee",
  usage_debit: "Usage",
  expired_reservation_charge: "Estimated usage (unsettled)",
  adjustment: "Adjustment",
  grant: "Grant",
};

/** Balance and the ledger: top-ups, grants, platform fees and usage, newest first. */
export function Overview(props: { accountId: string; operator: boolean }) {
  const action = useAction();
  const { data, error, reload } = useLoad(async () => {
    const [account, balance, ledger] = await Promise.all([
      api.accounts.getAccount({ accountId: props.accountId }),
      api.credits.getBalance({ accountId: props.accountId }),
      api.credits.listLedgerEntries({ accountId: props.accountId, pageSize: 100 }),
    ]);
    return {
      account: account.account,
      balance: balance.balanceNanoUsd,
      free: balance.freeNanoUsd,
      entries: ledger.entries,
    };
  }, [props.accountId]);
  return (
    <>
      <Alert message={error ?? action.error} />
      <Section title="Balance">
        {data ? (
          <dl class="facts">
            <dt>Account</dt>
            <dd data-testid="account-name">{data.account?.name}</dd>
            <dt>Plan</dt>
            <dd>{data.account?.planId}</dd>
            <dt>Balance</dt>
            <dd class="big" data-testid="balance">
              {usd(data.balance, 2)}
            </dd>
            <dt>Of which free credit (plan grants)</dt>
            <dd>{usd(data.free, 2)}</dd>
            <dt>Account budget</dt>
            <dd data-testid="account-budget">
              {budgetText(data.account?.budgetNanoUsd ?? 0n, data.account?.budgetPeriod ?? "")}
              {data.account?.timeZone ? ` (periods in ${data.account.timeZone})` : ""}
            </dd>
          </dl>
        ) : (
          <p>Loading…</p>
        )}
      </Section>
      {data?.account && props.operator ? (
        <Section title="Spend cap">
          <AccountBudgetForm
            key={`${data.account.budgetNanoUsd}/${data.account.budgetPeriod}/${data.account.timeZone}`}
            account={data.account}
            run={(a) => void action.run(a)}
            onSaved={() => void reload()}
          />
        </Section>
      ) : null}
      <Section title="Top-ups, grants, fees and usage">
        <table>
          <caption class="sr-only">Ledger entries, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Kind</th>
              <th scope="col" class="num">
                Amount
              </th>
              <th scope="col">Reference</th>
            </tr>
          </thead>
          <tbody>
            {data?.entries.map((e) => (
              <tr key={e.id}>
                <td>{when(e.createdAt)}</td>
                <td>
                  {KIND_LABELS[e.kind] ?? e.kind}
                  {e.estimated ? " (estimated)" : ""}
                </td>
                <td class="num">{usd(e.amountNanoUsd, 6)}</td>
                <td class="mono">{e.reference}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {data && data.entries.length === 0 ? <p>No ledger entries yet.</p> : null}
      </Section>
    </>
  );
}
