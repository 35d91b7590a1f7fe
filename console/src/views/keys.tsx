import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Key } from "../../../src/gen/tollgate/admin/v1/keys_pb.js";
import { api } from "../api.js";
import { when } from "../format.js";
import { Alert, Field, Section, useAction, useLoad } from "../ui.js";
import { BudgetState } from "./budgets.js";
import { LimitsEditor, LimitsNow, LimitsSummary } from "./key-limits.js";

const ENVIRONMENTS = ["production", "staging", "development", "test"];
const GRACE = [
  { label: "none (old secret dies now)", ms: 0 },
  { label: "1 hour", ms: 3_600_000 },
  { label: "24 hours", ms: 86_400_000 },
  { label: "7 days", ms: 7 * 86_400_000 },
];

/** What a key is now: revoked, expired, rotated with the old secret still alive, or active. */
function status(k: Key, now: number): string {
  if (k.revokedAt) return "revoked";
  if (k.expiresAt && Number(k.expiresAt.seconds) * 1000 <= now) return "expired";
  if (k.previousSecretExpiresAt && Number(k.previousSecretExpiresAt.seconds) * 1000 > now)
    return `active (old secret until ${when(k.previousSecretExpiresAt)})`;
  return "active";
}

/** A secret shown exactly once, with a copy button; dismissing it forgets it. */
function SecretOnce(props: { secret: string; title: string; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  // Keyboard and screen-reader users land on the secret, not somewhere below it.
  useEffect(() => box.current?.focus(), [props.secret]);
  return (
    <div class="secret" role="dialog" aria-modal="false" aria-labelledby="secret-title" tabIndex={-1} ref={box}>
      <h3 id="secret-title">{props.title}</h3>
      <p>This secret is shown once. Store it now: Tollgate keeps only its hash and cannot show it again.</p>
      <div class="secret-row">
        <code data-testid="new-secret">{props.secret}</code>
        <button
          type="button"
          onClick={async () => {
            await navigator.clipboard.writeText(props.secret);
            setCopied(true);
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <span class="sr-only" role="status">
          {copied ? "Secret copied to the clipboard" : ""}
        </span>
      </div>
      <button type="button" class="primary" onClick={props.onDone}>
        I have stored it
      </button>
    </div>
  );
}

/** What the keys page shows: the keys, and for each live key its rate limits and budget now (first 50 live keys). */
async function loadKeys(accountId: string) {
  const list = await api.keys.listKeys({ accountId, pageSize: 1000 });
  const live = list.keys.filter((k) => !k.revokedAt).slice(0, 50);
  const now = await Promise.all(
    live.map(async (k) => {
      const [limits, spend] = await Promise.all([
        api.keys.getKeyLimits({ keyId: k.id }),
        api.keys.getKeySpend({ keyId: k.id }),
      ]);
      return [k.id, { limits, spend }] as const;
    }),
  );
  return { keys: list.keys, now: new Map(now), at: Date.now() };
}

type KeysData = Awaited<ReturnType<typeof loadKeys>>;

/** What a row needs from the page: run an action (errors shown above), show a secret once, reload after a change. */
interface RowContext {
  run: (action: () => Promise<void>) => void;
  showSecret: (title: string, secret: string) => void;
  changed: () => Promise<void>;
}

/** Creates a key with a name and an environment label; its secret goes to the page's show-once box. */
function CreateKey(props: { accountId: string; ctx: RowContext; busy: boolean }) {
  const [name, setName] = useState("");
  const [environment, setEnvironment] = useState("production");
  const create = (e: Event) => {
    e.preventDefault();
    props.ctx.run(async () => {
      const res = await api.keys.createKey({ accountId: props.accountId, name, labels: { environment } });
      props.ctx.showSecret(`Key "${res.key?.name}" created`, res.secret);
      setName("");
      await props.ctx.changed();
    });
  };
  return (
    <form class="inline" onSubmit={create}>
      <Field label="Name">
        <input name="name" value={name} maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
      </Field>
      <Field label="Environment">
        <select name="environment" value={environment} onChange={(e) => setEnvironment(e.currentTarget.value)}>
          {ENVIRONMENTS.map((env) => (
            <option key={env} value={env}>
              {env}
            </option>
          ))}
        </select>
      </Field>
      <button type="submit" class="primary" disabled={props.busy}>
        Create key
      </button>
    </form>
  );
}

/** A live key's actions: rotate (choosing a grace for the old secret), limits, revoke (each confirmed first). */
function KeyActions(props: { k: Key; ctx: RowContext; editLimits: () => void }) {
  const [step, setStep] = useState<"rotate" | "revoke" | undefined>(undefined);
  const [grace, setGrace] = useState(0);
  const { k, ctx } = props;
  const rotate = () =>
    ctx.run(async () => {
      const res = await api.keys.rotateKey({ keyId: k.id, grace: grace > 0 ? durationFromMs(grace) : undefined });
      ctx.showSecret(`Key "${k.name}" rotated`, res.secret);
      setStep(undefined);
      await ctx.changed();
    });
  const revoke = () =>
    ctx.run(async () => {
      await api.keys.revokeKey({ keyId: k.id });
      setStep(undefined);
      await ctx.changed();
    });
  if (step === "rotate")
    return (
      <span class="confirm">
        <Field label="Grace for the old secret">
          <select value={String(grace)} onChange={(e) => setGrace(Number(e.currentTarget.value))}>
            {GRACE.map((g) => (
              <option key={g.ms} value={String(g.ms)}>
                {g.label}
              </option>
            ))}
          </select>
        </Field>
        <button type="button" class="primary" onClick={rotate}>
          Confirm rotate
        </button>
        <button type="button" onClick={() => setStep(undefined)}>
          Cancel
        </button>
      </span>
    );
  if (step === "revoke")
    return (
      <span class="confirm">
        <button type="button" class="danger" onClick={revoke}>
          Confirm revoke
        </button>
        <button type="button" onClick={() => setStep(undefined)}>
          Cancel
        </button>
      </span>
    );
  return (
    <>
      <button type="button" onClick={() => (setStep("rotate"), setGrace(0))}>
        Rotate
      </button>
      <button type="button" onClick={props.editLimits}>
        Limits
      </button>
      <button type="button" class="danger" onClick={() => setStep("revoke")}>
        Revoke
      </button>
    </>
  );
}

/** One key: name, environment, display prefix, status, limits (or their editor), last minute, budget, actions. */
function KeyRow(props: { k: Key; data: KeysData; ctx: RowContext }) {
  const [editing, setEditing] = useState(false);
  const { k, data, ctx } = props;
  const now = data.now.get(k.id);
  return (
    <tr data-key-id={k.id}>
      <td data-testid="key-name">{k.name || "(unnamed)"}</td>
      <td>{k.labels.environment ?? "—"}</td>
      <td class="mono">{k.displayPrefix}…</td>
      <td data-testid="key-status">{status(k, data.at)}</td>
      <td>
        {editing ? (
          <LimitsEditor
            k={k}
            run={ctx.run}
            onDone={(saved) => {
              setEditing(false);
              if (saved) void ctx.changed();
            }}
          />
        ) : (
          <LimitsSummary k={k} />
        )}
      </td>
      <td data-testid="key-limits-now">{now ? <LimitsNow limits={now.limits} /> : "—"}</td>
      <td data-testid="key-budget">
        <BudgetState status={now?.spend.keyBudget} limit={k.budgetNanoUsd} period={k.budgetPeriod} />
      </td>
      <td>{when(k.lastUsedAt)}</td>
      <td class="actions">{k.revokedAt ? null : <KeyActions k={k} ctx={ctx} editLimits={() => setEditing(true)} />}</td>
    </tr>
  );
}

/** The account's keys: create (secret once), environment label, rotate with grace, revoke, limits, live usage. */
export function Keys(props: { accountId: string }) {
  const keys = useLoad(() => loadKeys(props.accountId), [props.accountId]);
  const action = useAction();
  const [secret, setSecret] = useState<{ title: string; value: string } | undefined>(undefined);
  const ctx: RowContext = {
    run: (a) => void action.run(a),
    showSecret: (title, value) => setSecret({ title, value }),
    changed: keys.reload,
  };
  return (
    <>
      <Alert message={keys.error ?? action.error} />
      {secret ? <SecretOnce title={secret.title} secret={secret.value} onDone={() => setSecret(undefined)} /> : null}
      <Section title="Create a key">
        <CreateKey accountId={props.accountId} ctx={ctx} busy={action.busy} />
      </Section>
      <Section
        title="Keys"
        actions={
          <button type="button" onClick={() => void keys.reload()}>
            Refresh
          </button>
        }
      >
        <table data-testid="keys-table">
          <caption class="sr-only">
            Keys of this account, with their limits, what remains of each window now, and their budget
          </caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Environment</th>
              <th scope="col">Key</th>
              <th scope="col">Status</th>
              <th scope="col">Limits</th>
              <th scope="col">Rate limits now</th>
              <th scope="col">Budget</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {keys.data?.keys.map((k) => (
              <KeyRow key={k.id} k={k} data={keys.data!} ctx={ctx} />
            ))}
          </tbody>
        </table>
        {keys.data && keys.data.keys.length === 0 ? <p>No keys yet.</p> : null}
      </Section>
    </>
  );
}
