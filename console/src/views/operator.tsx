import { useState } from "preact/hooks";
import type { Account } from "../../../src/gen/tollgate/admin/v1/accounts_pb.js";
import type { AuditEvent } from "../../../src/gen/tollgate/admin/v1/audit_pb.js";
import { type Model, Tier } from "../../../src/gen/tollgate/admin/v1/catalogue_pb.js";
import type { Plan } from "../../../src/gen/tollgate/admin/v1/plans_pb.js";
import { api } from "../api.js";
import { count, parsePerMillion, parseUsd, perMillion, usd, when } from "../format.js";
import { Alert, Field, Section, useAction, useLoad } from "../ui.js";

/** Every account (up to 10 pages of 1000), for searching by name or id in the browser. */
async function allAccounts(): Promise<Account[]> {
  const out: Account[] = [];
  let pageToken = "";
  for (let i = 0; i < 10; i++) {
    const page = await api.accounts.listAccounts({ pageSize: 1000, pageToken });
    out.push(...page.accounts);
    pageToken = page.nextPageToken;
    if (!pageToken) break;
  }
  return out;
}

/** Adds credit to an account (the platform fee is recorded on top); each submission is one idempotent top-up. */
function TopUpForm(props: {
  accountId: string;
  busy: boolean;
  run: (a: () => Promise<void>) => void;
  onDone: (message?: string) => void;
}) {
  const [amount, setAmount] = useState("");
  const submit = (e: Event) => {
    e.preventDefault();
    props.run(async () => {
      const credit = parseUsd(amount);
      if (credit === undefined || credit <= 0n) throw new Error("amount: a positive dollar amount, e.g. 25 or 25.50");
      const res = await api.credits.topUp({
        accountId: props.accountId,
        amountNanoUsd: credit,
        idempotencyKey: crypto.randomUUID(),
      });
      props.onDone(
        `Topped up ${usd(res.creditNanoUsd)} (+ ${usd(res.platformFeeNanoUsd)} platform fee); balance ${usd(res.balanceNanoUsd)}`,
      );
    });
  };
  return (
    <form class="inline" onSubmit={submit} aria-label={`Top up ${props.accountId}`}>
      <Field label={`Credit to add to ${props.accountId} (USD; the platform fee is added)`}>
        <input inputMode="decimal" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
      </Field>
      <button type="submit" class="primary" disabled={props.busy}>
        Add credit
      </button>
      <button type="button" onClick={() => props.onDone()}>
        Cancel
      </button>
    </form>
  );
}

/** Operator: accounts — search, change plan, top up, open an account's balance, keys and usage. */
export function Accounts() {
  const accounts = useLoad(async () => {
    const [list, plans] = await Promise.all([allAccounts(), api.plans.listPlans({})]);
    return { list, plans: plans.plans };
  }, []);
  const action = useAction();
  const [query, setQuery] = useState("");
  const [topUp, setTopUp] = useState<string | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const q = query.trim().toLowerCase();
  const shown = (accounts.data?.list ?? []).filter(
    (a) => q === "" || a.name.toLowerCase().includes(q) || a.id.toLowerCase().includes(q),
  );
  const changePlan = (a: Account, planId: string) =>
    action.run(async () => {
      await api.accounts.updateAccount({ accountId: a.id, planId });
      setDone(`${a.name}: plan is now ${planId}`);
      await accounts.reload();
    });
  return (
    <>
      <Alert message={accounts.error ?? action.error} />
      {done ? (
        <p class="notice" role="status">
          {done}
        </p>
      ) : null}
      <Section title="Accounts">
        <Field label="Search by name or id">
          <input type="search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </Field>
        {topUp ? (
          <TopUpForm
            accountId={topUp}
            busy={action.busy}
            run={(a) => void action.run(a)}
            onDone={(message) => {
              if (message) setDone(message);
              setTopUp(undefined);
            }}
          />
        ) : null}
        <table data-testid="accounts-table">
          <caption class="sr-only">Accounts</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Plan</th>
              <th scope="col">Status</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((a) => (
              <tr key={a.id}>
                <td data-testid="account-name">{a.name}</td>
                <td class="mono">{a.id}</td>
                <td>
                  <label class="sr-only" for={`plan-${a.id}`}>
                    Plan of {a.name}
                  </label>
                  <select
                    id={`plan-${a.id}`}
                    value={a.planId}
                    onChange={(e) => void changePlan(a, e.currentTarget.value)}
                  >
                    {accounts.data?.plans.map((p) => (
                      <option key={p.id} value={p.id}>
                        {p.name || p.id}
                      </option>
                    ))}
                  </select>
                </td>
                <td>{a.suspended ? "suspended" : "active"}</td>
                <td class="actions">
                  <a href={`#/accounts/${encodeURIComponent(a.id)}/overview`}>Open</a>
                  <button type="button" onClick={() => setTopUp(a.id)}>
                    Top up
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}

/** Edits a plan's per-key defaults and its key count. */
function PlanEditor(props: {
  plan: Plan;
  busy: boolean;
  run: (a: () => Promise<void>) => void;
  onDone: (saved: boolean) => void;
}) {
  const [rpm, setRpm] = useState(String(props.plan.requestsPerMinute));
  const [tpm, setTpm] = useState(String(props.plan.tokensPerMinute));
  const [maxKeys, setMaxKeys] = useState(String(props.plan.maxKeys));
  const save = (e: Event) => {
    e.preventDefault();
    props.run(async () => {
      for (const [field, value] of [
        ["requests per minute", rpm],
        ["tokens per minute", tpm],
        ["max keys", maxKeys],
      ])
        if (!/^\d+$/.test(value!.trim())) throw new Error(`${field}: a whole number`);
      await api.plans.updatePlan({
        planId: props.plan.id,
        requestsPerMinute: Number(rpm),
        tokensPerMinute: BigInt(tpm.trim()),
        maxKeys: Number(maxKeys),
      });
      props.onDone(true);
    });
  };
  return (
    <form class="inline" onSubmit={save} aria-label={`Edit plan ${props.plan.id}`}>
      <Field label="Requests per minute">
        <input inputMode="numeric" value={rpm} onInput={(e) => setRpm(e.currentTarget.value)} />
      </Field>
      <Field label="Tokens per minute">
        <input inputMode="numeric" value={tpm} onInput={(e) => setTpm(e.currentTarget.value)} />
      </Field>
      <Field label="Max live keys">
        <input inputMode="numeric" value={maxKeys} onInput={(e) => setMaxKeys(e.currentTarget.value)} />
      </Field>
      <button type="submit" class="primary" disabled={props.busy}>
        Save plan
      </button>
      <button type="button" onClick={() => props.onDone(false)}>
        Cancel
      </button>
    </form>
  );
}

/** Operator: plans and their per-key defaults. */
export function Plans() {
  const plans = useLoad(() => api.plans.listPlans({ includeRetired: true }), []);
  const action = useAction();
  const [edit, setEdit] = useState<Plan | undefined>(undefined);
  return (
    <>
      <Alert message={plans.error ?? action.error} />
      <Section title="Plans">
        {edit ? (
          <PlanEditor
            plan={edit}
            busy={action.busy}
            run={(a) => void action.run(a)}
            onDone={(saved) => {
              setEdit(undefined);
              if (saved) void plans.reload();
            }}
          />
        ) : null}
        <table>
          <caption class="sr-only">Plans</caption>
          <thead>
            <tr>
              <th scope="col">Plan</th>
              <th scope="col" class="num">
                Requests/min
              </th>
              <th scope="col" class="num">
                Tokens/min
              </th>
              <th scope="col">Tiers</th>
              <th scope="col" class="num">
                Max keys
              </th>
              <th scope="col" class="num">
                Grants (sign-up / monthly)
              </th>
              <th scope="col">Status</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {plans.data?.plans.map((p) => (
              <tr key={p.id}>
                <td>
                  {p.name} <span class="mono">({p.id})</span>
                </td>
                <td class="num">{count(p.requestsPerMinute)}</td>
                <td class="num">{count(p.tokensPerMinute)}</td>
                <td>{p.tiers.map((t) => Tier[t]?.toLowerCase()).join(", ")}</td>
                <td class="num">{count(p.maxKeys)}</td>
                <td class="num">
                  {usd(p.grantSignupNanoUsd)} / {usd(p.grantMonthlyNanoUsd)}
                </td>
                <td>{p.retired ? "retired" : "active"}</td>
                <td>
                  <button type="button" onClick={() => setEdit(p)}>
                    Edit
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}

/** Edits a model's three prices in USD per million tokens; they are stored exactly as pico-USD per token. */
function PriceEditor(props: {
  model: Model;
  busy: boolean;
  run: (a: () => Promise<void>) => void;
  onDone: (saved: boolean) => void;
}) {
  const shown = (pico: bigint | undefined) => perMillion(pico ?? 0n).slice(1);
  const [input, setInput] = useState(shown(props.model.prices?.inputPicoUsdPerToken));
  const [cached, setCached] = useState(shown(props.model.prices?.cachedInputPicoUsdPerToken));
  const [output, setOutput] = useState(shown(props.model.prices?.outputPicoUsdPerToken));
  const save = (e: Event) => {
    e.preventDefault();
    props.run(async () => {
      const prices = {
        inputPicoUsdPerToken: parsePerMillion(input),
        cachedInputPicoUsdPerToken: parsePerMillion(cached),
        outputPicoUsdPerToken: parsePerMillion(output),
      };
      for (const [field, value] of Object.entries(prices))
        if (value === undefined) throw new Error(`${field}: a price in USD per million tokens, e.g. 1.25`);
      await api.catalogue.updateModel({ modelId: props.model.id, prices: prices as Required<typeof prices> });
      props.onDone(true);
    });
  };
  return (
    <form class="inline" onSubmit={save} aria-label={`Prices of ${props.model.id}`}>
      <Field label="Input ($ per 1M tokens)">
        <input value={input} onInput={(e) => setInput(e.currentTarget.value)} />
      </Field>
      <Field label="Cached input ($ per 1M tokens)">
        <input value={cached} onInput={(e) => setCached(e.currentTarget.value)} />
      </Field>
      <Field label="Output ($ per 1M tokens)">
        <input value={output} onInput={(e) => setOutput(e.currentTarget.value)} />
      </Field>
      <button type="submit" class="primary" disabled={props.busy}>
        Save prices
      </button>
      <button type="button" onClick={() => props.onDone(false)}>
        Cancel
      </button>
    </form>
  );
}

/** Operator: the catalogue and its prices (shown and edited in USD per million tokens, stored exactly). */
export function Catalogue() {
  const models = useLoad(() => api.catalogue.listModels({}), []);
  const action = useAction();
  const [edit, setEdit] = useState<Model | undefined>(undefined);
  return (
    <>
      <Alert message={models.error ?? action.error} />
      <Section title="Catalogue and prices">
        {edit ? (
          <PriceEditor
            model={edit}
            busy={action.busy}
            run={(a) => void action.run(a)}
            onDone={(saved) => {
              setEdit(undefined);
              if (saved) void models.reload();
            }}
          />
        ) : null}
        <table data-testid="models-table">
          <caption class="sr-only">Models and their prices in USD per million tokens</caption>
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Provider</th>
              <th scope="col">Tier</th>
              <th scope="col" class="num">
                Input /1M
              </th>
              <th scope="col" class="num">
                Cached /1M
              </th>
              <th scope="col" class="num">
                Output /1M
              </th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {models.data?.models.map((m) => (
              <tr key={m.id} data-model-id={m.id}>
                <td>{m.id}</td>
                <td>{m.provider}</td>
                <td>{Tier[m.tier]?.toLowerCase()}</td>
                <td class="num" data-testid="price-input">
                  {perMillion(m.prices?.inputPicoUsdPerToken ?? 0n)}
                </td>
                <td class="num">{perMillion(m.prices?.cachedInputPicoUsdPerToken ?? 0n)}</td>
                <td class="num">{perMillion(m.prices?.outputPicoUsdPerToken ?? 0n)}</td>
                <td>
                  <button type="button" aria-label={`Edit prices of ${m.id}`} onClick={() => setEdit(m)}>
                    Edit prices
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}

/** Operator: the audit log, newest first, a page at a time. */
export function Audit() {
  const [pages, setPages] = useState<{ events: AuditEvent[]; next: string }>({ events: [], next: "" });
  const first = useLoad(async () => {
    const page = await api.audit.listAuditEvents({ pageSize: 100 });
    setPages({ events: page.events, next: page.nextPageToken });
    return true;
  }, []);
  const action = useAction();
  const more = () =>
    action.run(async () => {
      const page = await api.audit.listAuditEvents({ pageSize: 100, pageToken: pages.next });
      setPages({ events: [...pages.events, ...page.events], next: page.nextPageToken });
    });
  return (
    <>
      <Alert message={first.error ?? action.error} />
      <Section title="Audit log">
        <table data-testid="audit-table">
          <caption class="sr-only">Admin changes, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who (admin token)</th>
              <th scope="col">What</th>
              <th scope="col">Targets</th>
            </tr>
          </thead>
          <tbody>
            {pages.events.map((e) => (
              <tr key={e.id}>
                <td>{when(e.time)}</td>
                <td class="mono">{e.tokenId}</td>
                <td>{e.method.replace(/^tollgate\.admin\.v1\./, "")}</td>
                <td class="mono">
                  {Object.entries(e.targets)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(" ")}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {pages.next ? (
          <button type="button" disabled={action.busy} onClick={() => void more()}>
            Load more
          </button>
        ) : null}
      </Section>
    </>
  );
}
