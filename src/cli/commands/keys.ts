import { NotFoundError } from "../../adapters/sql/account-store.js";
import type { KeyRecord } from "../../domain/keys.js";
import { durationFlag, group, iso, parse, required, UsageError, withStores, type Handler } from "../cli-kit.js";
import { printTable } from "../output.js";

function keyView(key: KeyRecord) {
  return {
    id: key.id,
    account_id: key.accountId,
    name: key.name,
    prefix: key.displayPrefix,
    labels: key.labels,
    models: key.allowedModels,
    requests_per_minute: key.requestsPerMinute,
    tokens_per_minute: key.tokensPerMinute,
    expires_at: iso(key.expiresAt),
    revoked_at: iso(key.revokedAt),
    created_at: iso(key.createdAt),
  };
}

const shownOnce = "This secret is shown once; store it now.";

/** `tollgate keys create|list|revoke|rotate`. */
export const keys: Handler = group("keys", {
  async create(args, out) {
    const { values } = parse(args, {
      account: { type: "string" },
      name: { type: "string" },
      "expires-in": { type: "string" },
      models: { type: "string" },
      label: { type: "string", multiple: true },
    });
    const accountId = required(values.account, "--account");
    const expiresAt = values["expires-in"] === undefined ? null : Date.now() + durationFlag(values["expires-in"], "--expires-in");
    const models = values.models === undefined ? null : values.models.split(",").map((m) => m.trim()).filter(Boolean);
    if (models !== null && models.length === 0) throw new UsageError("--models needs at least one model id");
    const labels: Record<string, string> = {};
    for (const label of values.label ?? []) {
      const eq = label.indexOf("=");
      if (eq <= 0) throw new UsageError(`--label must be key=value, not "${label}"`);
      labels[label.slice(0, eq)] = label.slice(eq + 1);
    }
    const issued = await withStores(values, (s) => s.keys.create({ accountId, name: values.name, expiresAt, allowedModels: models, labels }));
    out.result({ ...keyView(issued.key), secret: issued.secret }, () => `created key ${issued.key.id}\n\n  ${issued.secret}\n\n${shownOnce}`);
  },
  async list(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = required(values.account, "--account");
    const rows = await withStores(values, async (s) => {
      if (!(await s.accounts.get(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
      return (await s.keys.listByAccount(accountId)).map(keyView);
    });
    out.result(rows, () =>
      printTable(rows.map((k) => ({ id: k.id, name: k.name, prefix: k.prefix + "…", labels: Object.entries(k.labels).map(([a, b]) => `${a}=${b}`).join(","), expires: k.expires_at ?? "-", revoked: k.revoked_at ?? "-" }))),
    );
  },
  async revoke(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const id = required(positionals[0], "KEY_ID");
    const key = await withStores(values, (s) => s.keys.revoke(id));
    out.result(keyView(key), () => `revoked key ${key.id}`);
  },
  async rotate(args, out) {
    const { values, positionals } = parse(args, { grace: { type: "string" } }, 1);
    const id = required(positionals[0], "KEY_ID");
    const grace = values.grace === undefined ? 0 : durationFlag(values.grace, "--grace");
    const issued = await withStores(values, (s) => s.keys.rotate(id, grace));
    out.result({ ...keyView(issued.key), secret: issued.secret, previous_secret_valid_until: iso(issued.key.previousSecretExpiresAt) }, () =>
      `rotated key ${issued.key.id}${grace ? ` (old secret valid for ${values.grace})` : " (old secret rejected from now on)"}\n\n  ${issued.secret}\n\n${shownOnce}`,
    );
  },
});
