/** Help text: the overview, and one block per command and subcommand, printed by `--help` (exit 0). */

const ADMIN_NOTE = `Goes through the admin API: TOLLGATE_ADMIN_URL (default http://127.0.0.1:8080, from admin.listen) with
TOLLGATE_ADMIN_TOKEN, else the local operator credential that \`tollgate serve\` writes to <data.dir>/admin-token.`;

const COMMON = `Every command takes --json (machine-readable output), --config FILE (or TOLLGATE_CONFIG) and --help.`;

/** Per command: its one-line summary, and per subcommand ("" for the command alone) its usage and flags. */
const COMMANDS: Record<string, { summary: string; admin: boolean; actions: Record<string, string> }> = {
  serve: {
    summary: "run the control plane (authz, meter, admin) and, without --role, a data plane",
    admin: false,
    actions: {
      "": `tollgate serve [--role authz|meter|admin]... [--mock-providers] [--no-data-plane]
  --role R            run only these roles (repeatable or comma-separated); default all three and a data plane
  --mock-providers    start the mock provider on 127.0.0.1:9100 and use it for every provider without a credential
  --no-data-plane     do not start Envoy / the local edge
With the admin role it writes the local operator credential to <data.dir>/admin-token (mode 0600).`,
    },
  },
  migrate: {
    summary: "bring the database schema up to date (direct; works with no server)",
    admin: false,
    actions: {
      "": 'tollgate migrate\n  Runs straight on the database named by database.url; recorded in the audit log as "bootstrap".',
    },
  },
  accounts: {
    summary: "create, list, show and update accounts",
    admin: true,
    actions: {
      create: "tollgate accounts create --name NAME --plan PLAN_ID",
      list: "tollgate accounts list",
      get: "tollgate accounts get ACCOUNT_ID",
      update: "tollgate accounts update ACCOUNT_ID [--name N] [--plan P] [--suspend|--resume]",
      budget:
        'tollgate accounts budget ACCOUNT_ID [--budget-usd USD --budget-period day|week|month|lifetime] [--time-zone TZ]\n  The account\'s spend cap over all its keys (0 clears) and the IANA time zone of budget periods ("" for UTC).\n  Operators only.',
    },
  },
  keys: {
    summary: "issue, list, show, narrow, rotate and revoke API keys",
    admin: true,
    actions: {
      create: `tollgate keys create --account ID [--name NAME] [--expires-in 30d] [--models a,b] [--label env=prod]... [--rpm N] [--tpm N]
    [--rpd N] [--tpd N] [--max-concurrency N] [--budget-usd USD --budget-period day|week|month|lifetime]
  Prints the tg_ secret once. --rpd/--tpd: requests and tokens per UTC day; --max-concurrency: requests in flight;
  --budget-usd: a spend cap per period (in the account's time zone), past which requests get 402 budget_exceeded.`,
      list: "tollgate keys list --account ID",
      get: "tollgate keys get KEY_ID",
      update:
        "tollgate keys update KEY_ID [--name N] [--rpm N] [--tpm N] [--rpd N] [--tpd N] [--max-concurrency N]\n    [--budget-usd USD] [--budget-period day|week|month|lifetime] [--models a,b | --all-models] [--label k=v]...\n  A limit of 0 returns to the plan's; --budget-usd 0 removes the budget.",
      spend:
        "tollgate keys spend KEY_ID\n  The key's budget and its account's: spent and held in the current period, what is left, when it resets.",
      limits:
        "tollgate keys limits KEY_ID\n  The key's rate-limit windows now (per minute, per UTC day, in flight): the limit in force, what remains, seconds\n  until it resets. Read without admitting anything.",
      rotate:
        "tollgate keys rotate KEY_ID [--grace 1h]\n  New secret for the same key; the old one is refused at once, or after --grace.",
      revoke: "tollgate keys revoke KEY_ID\n  Every authz process refuses the key within 100 ms.",
    },
  },
  credits: {
    summary: "top up, and read balances and the ledger",
    admin: true,
    actions: {
      add: "tollgate credits add --account ID --amount USD [--idempotency-key K]\n  Records the platform fee beside the credit.",
      balance: "tollgate credits balance --account ID",
      ledger: "tollgate credits ledger --account ID [--limit N]",
    },
  },
  usage: {
    summary: "metered usage: records, summaries, exports",
    admin: true,
    actions: {
      "": "tollgate usage --account ID [--key ID] [--model M] [--since T] [--until T] [--daily] [--limit N]",
      summary: "tollgate usage summary --account ID [--group-by key,model,day] [--since T] [--until T]",
      export: "tollgate usage export --account ID [--format csv|jsonl] [--since T] [--until T]   (streamed to stdout)",
    },
  },
  plans: {
    summary: "plans: rate limits and model tiers",
    admin: true,
    actions: {
      list: "tollgate plans list [--all]",
      create:
        "tollgate plans create PLAN_ID --name N --rpm N --tpm N --tiers basic,premium [--rpd N] [--tpd N]\n    [--max-concurrency N] [--expected-output N] [--grant-signup-usd USD] [--grant-monthly-usd USD]",
      update:
        "tollgate plans update PLAN_ID [--name N] [--rpm N] [--tpm N] [--tiers basic,premium] [--rpd N] [--tpd N]\n    [--max-concurrency N] [--expected-output N] [--grant-signup-usd USD] [--grant-monthly-usd USD]\n  0 clears a daily quota, the concurrency limit or the expected output (the default, 1024), or a grant.\n  Grants are free credit (no platform fee, spent first): once at sign-up, and each UTC month up to the amount.",
      retire: "tollgate plans retire PLAN_ID",
    },
  },
  models: {
    summary: "the model catalogue (prices in USD per million tokens, stored exactly)",
    admin: true,
    actions: {
      list: "tollgate models list [--all]",
      create:
        "tollgate models create MODEL_ID --provider P --tier basic|premium --input USD --output USD [--cached-input USD]\n    --context-window N --max-output N [--name N] [--upstream ID]\n    [--expected-output N]  output tokens the token limits count without max_tokens (0: the plan's, else 1024)",
      update:
        "tollgate models update MODEL_ID [--input USD] [--output USD] [--cached-input USD] [--tier T] [--name N]\n    [--expected-output N] …",
      retire: "tollgate models retire MODEL_ID",
    },
  },
  audit: {
    summary: "the admin change log, newest first",
    admin: true,
    actions: { "": "tollgate audit [--limit N]" },
  },
  "admin-tokens": {
    summary: "admin API tokens (the first operator token needs no server)",
    admin: true,
    actions: {
      create: `tollgate admin-tokens create --operator|--account ID [--name N]
  Prints the tga_ token once. With no credential and no operator token yet it bootstraps the first one on the
  database (audited as "bootstrap"); after that it is an admin API call with an operator credential, the audit's actor.`,
      list: "tollgate admin-tokens list",
      revoke: "tollgate admin-tokens revoke TOKEN_ID",
    },
  },
  webhooks: {
    summary: "alerts by webhook (balance.low, budget.threshold, budget.exhausted, key.revoked, key.rotated)",
    admin: true,
    actions: {
      create: `tollgate webhooks create --account ID --url https://… [--events a,b] [--low-balance-usd N] [--description D]
  Prints the whsec_ signing secret once. --events defaults to every type; --low-balance-usd sets balance.low's
  threshold. Only https:// URLs, and never private, loopback or link-local addresses unless the operator lists
  them in webhooks.allowed_private_networks (http:// only to such a loopback host).`,
      list: "tollgate webhooks list --account ID",
      delete: "tollgate webhooks delete WEBHOOK_ID\n  Pending deliveries are cancelled; the delivery log stays.",
      deliveries:
        "tollgate webhooks deliveries --account ID [--webhook ID] [--limit N]\n  The delivery log, newest first: status, attempts, the last answer or error, the next attempt.",
    },
  },
  reconcile: {
    summary: "replay Envoy's JSON file access log into the ledger (idempotent)",
    admin: false,
    actions: { "": "tollgate reconcile FILE" },
  },
  envoy: {
    summary: "render Envoy's bootstrap from the catalogue's providers and the config (no server)",
    admin: false,
    actions: {
      render: `tollgate envoy render [--local] [--out FILE] [--catalogue FILE] [--from-database] [--authz HOST:PORT]
    [--meter HOST:PORT] [--mock-upstream URL] [--tls-dir DIR]
  One route and cluster per catalogue provider (its upstream), authz and the meter as clusters, retries only
  before a provider can have seen a request. Default: production (roles at the compose service names authz and
  meter on their configured ports, over mTLS with DIR/envoy.crt, envoy.key and ca.crt, default /etc/tollgate/tls;
  plaintext only with tls.allow_plaintext). --local: roles where authz.listen and meter.listen say (mTLS with
  tls.edge's certificate when tls.* is set), every provider on the mock provider (default http://127.0.0.1:9100).
  Providers and their upstreams come from the catalogue file; --from-database renders only the providers the database
  (database.url) serves, refusing one the file gives no upstream. --out replaces FILE atomically; without it the YAML
  goes to stdout. \`npm run envoy:render\` regenerates envoy/*.yaml.`,
    },
  },
  health: {
    summary: "grpc.health.v1 of the authz or meter role (exit 0 when SERVING)",
    admin: false,
    actions: {
      "": "tollgate health --address HOST:PORT [--service NAME] [--ca FILE --cert FILE --key FILE [--server-name NAME]]",
    },
  },
};

/** The overview `tollgate --help` prints. */
export function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `tollgate: the Tollgate control plane

Commands (tollgate COMMAND --help for each):
${lines.join("\n")}

Management commands (accounts, keys, credits, usage, plans, models, audit, webhooks) are clients of the admin API.
${ADMIN_NOTE}

${COMMON}`;
}

/** Whether `command` is known. */
export function knownCommand(command: string): boolean {
  return Object.hasOwn(COMMANDS, command);
}

/** The help for `command`, or for one of its subcommands when `action` names one. */
export function commandHelp(command: string, action?: string): string {
  const c = COMMANDS[command]!;
  const one = action !== undefined && action !== "" && Object.hasOwn(c.actions, action) ? c.actions[action] : undefined;
  const body = one ?? Object.values(c.actions).join("\n");
  return `tollgate ${command}${one ? ` ${action}` : ""}: ${c.summary}\n\n${body}\n\n${c.admin ? ADMIN_NOTE + "\n" : ""}${COMMON}`;
}

/** Every command and subcommand that has help ("" for a command without subcommands), for tests and completion. */
export function helpTopics(): Array<[command: string, action: string]> {
  return Object.entries(COMMANDS).flatMap(([command, c]) =>
    Object.keys(c.actions).map((action) => [command, action] as [string, string]),
  );
}
