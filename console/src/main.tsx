import { type JSX, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { SessionInfo } from "../../src/gen/tollgate/admin/v1/console_pb.js";
import { api, errorMessage, onSignedOut } from "./api.js";
import { when } from "./format.js";
import { Alert, Field } from "./ui.js";
import { Keys } from "./views/keys.js";
import { Accounts, Audit, Catalogue, Plans } from "./views/operator.js";
import { Overview } from "./views/overview.js";
import { Usage } from "./views/usage.js";

/** The route in the location hash: "#/keys", "#/accounts/acct_…/usage". */
function useRoute(): string[] {
  const parse = () =>
    location.hash
      .replace(/^#\/?/, "")
      .split("/")
      .filter((p) => p !== "")
      .map(decodeURIComponent);
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const listener = () => setRoute(parse());
    addEventListener("hashchange", listener);
    return () => removeEventListener("hashchange", listener);
  }, []);
  return route;
}

/** Sign-in: the admin token is sent once, in the Authorization header, and dropped; the session lives in a cookie. */
function SignIn(props: { onSignedIn: (s: SessionInfo) => void; message?: string }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | undefined>(props.message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const res = await api.sessions.createSession({}, { headers: { authorization: `Bearer ${token.trim()}` } });
      setToken("");
      props.onSignedIn(res.session!);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>Tollgate console</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <Field label="Admin token" hint="An operator or account token (tga_…). It is exchanged for a one-hour session.">
          <input
            type="password"
            name="token"
            autoComplete="off"
            spellcheck={false}
            required
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
          />
        </Field>
        <Alert message={error} />
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

interface NavItem {
  href: string;
  label: string;
}

/** The signed-in console: navigation by role, then the view the route names. */
function Shell(props: { session: SessionInfo; onSignOut: () => void }) {
  const route = useRoute();
  const { session } = props;
  const operator = session.kind === "operator";
  const [view, ...rest] = route.length > 0 ? route : [operator ? "accounts" : "overview"];
  const accountNav = (base: string): NavItem[] => [
    { href: `${base}overview`, label: "Balance" },
    { href: `${base}keys`, label: "Keys" },
    { href: `${base}usage`, label: "Usage" },
  ];
  const nav: NavItem[] = operator
    ? [
        { href: "#/accounts", label: "Accounts" },
        { href: "#/plans", label: "Plans" },
        { href: "#/catalogue", label: "Catalogue" },
        { href: "#/audit", label: "Audit log" },
      ]
    : accountNav("#/");
  let body: JSX.Element;
  let title: string;
  if (operator && view === "accounts" && rest[0]) {
    const accountId = rest[0];
    const sub = rest[1] ?? "overview";
    title = `Account ${accountId}`;
    body = (
      <>
        <nav class="subnav" aria-label="Account">
          {accountNav(`#/accounts/${encodeURIComponent(accountId)}/`).map((n) => (
            <a key={n.href} href={n.href} aria-current={n.href.endsWith(`/${sub}`) ? "page" : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
        {accountView(sub, accountId, true)}
      </>
    );
  } else if (operator) {
    const views: Record<string, [string, () => JSX.Element]> = {
      accounts: ["Accounts", () => <Accounts />],
      plans: ["Plans", () => <Plans />],
      catalogue: ["Catalogue", () => <Catalogue />],
      audit: ["Audit log", () => <Audit />],
    };
    const [t, make] = views[view!] ?? views.accounts!;
    title = t;
    body = make();
  } else {
    title = { keys: "Keys", usage: "Usage" }[view!] ?? "Balance";
    body = accountView(view!, session.accountId, false);
  }
  useEffect(() => {
    document.title = `${title} · Tollgate console`;
  }, [title]);
  const current = `#/${route.join("/")}`;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <strong>Tollgate</strong>
        <nav aria-label="Main">
          {nav.map((n) => (
            <a key={n.href} href={n.href} aria-current={current.startsWith(n.href) ? "page" : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {operator ? "Operator" : `Account ${session.accountId}`}
          {session.expiresAt ? ` · session until ${when(session.expiresAt)}` : ""}
        </span>
        <button type="button" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <h1>{title}</h1>
        {body}
      </main>
    </>
  );
}

function accountView(view: string, accountId: string, operator: boolean) {
  if (view === "keys") return <Keys accountId={accountId} />;
  if (view === "usage") return <Usage accountId={accountId} />;
  return <Overview accountId={accountId} operator={operator} />;
}

function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [message, setMessage] = useState<string | undefined>(undefined);
  useEffect(() => {
    api.sessions.getSession({}).then(
      (res) => setSession(res.session ?? null),
      () => setSession(null),
    );
    return onSignedOut(() => {
      setMessage("Your session has ended. Sign in again.");
      setSession(null);
    });
  }, []);
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null)
    return (
      <SignIn
        message={message}
        onSignedIn={(s) => {
          setMessage(undefined);
          location.hash = "";
          setSession(s);
        }}
      />
    );
  return (
    <Shell
      session={session}
      onSignOut={() => {
        api.sessions.deleteSession({}).finally(() => {
          location.hash = "";
          setSession(null);
        });
      }}
    />
  );
}

render(<App />, document.getElementById("app")!);
