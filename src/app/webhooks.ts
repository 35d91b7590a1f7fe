import type { Principal } from "../domain/admin-store.js";
import { newId } from "../domain/api-key.js";
import { AppError, invalidField, NotFoundError } from "../domain/errors.js";
import type { KeyView } from "../domain/admin-store.js";
import { MAX_BALANCE_NANOS, nanos } from "../domain/money.js";
import { mintWebhookSecret } from "../domain/webhook-signature.js";
import { createTargetPolicy } from "../domain/webhook-targets.js";
import {
  isWebhookEventType,
  WEBHOOK_EVENT_TYPES,
  type WebhookDeliveryView,
  type WebhookEventInput,
  type WebhookEventType,
  type WebhookRecord,
} from "../domain/webhooks.js";
import { audit, canSee, requireAccount, type AdminContext } from "./admin-context.js";
import { pageOf, pageSize } from "./page-tokens.js";
import { id, optionalText } from "./validate.js";

const M = "tollgate.admin.v1.WebhookService/";
/** Webhooks per account: bounds the fan-out of every event. */
export const MAX_WEBHOOKS_PER_ACCOUNT = 10;

/** A webhook as the API shows it: never the secret. */
export type WebhookView = Omit<WebhookRecord, "secret">;

/** A new webhook and its signing secret (shown once). */
export interface CreatedWebhook {
  webhook: WebhookView;
  secret: string;
}

const view = ({ secret: _secret, ...rest }: WebhookRecord): WebhookView => rest;

/** Webhook use cases: create (secret shown once), list, delete, the delivery log. */
export type WebhookOperations = ReturnType<typeof createWebhookOperations>;

/** Creates the webhook use cases. */
export function createWebhookOperations(ctx: AdminContext) {
  const { store } = ctx;
  const targets = ctx.webhookTargets ?? createTargetPolicy({ allowedPrivateNetworks: [] });
  const accountOf = (who: Principal, accountId: string) =>
    accountId === "" && who.kind === "account" ? who.accountId : id(accountId, "account_id");
  const existing = async (accountId: string) => {
    if (!(await store.account(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
  };

  return {
    async create(
      who: Principal,
      input: {
        accountId: string;
        url: string;
        eventTypes: readonly string[];
        lowBalanceThreshold: bigint;
        description: string;
      },
    ): Promise<CreatedWebhook> {
      const accountId = id(input.accountId, "account_id");
      requireAccount(who, accountId);
      ctx.writes?.take(who);
      if (input.url === "") throw invalidField("url", "must not be empty");
      const refusal = targets.checkUrl(input.url);
      if (refusal) throw invalidField("url", refusal);
      const eventTypes: WebhookEventType[] = [];
      for (const [i, t] of input.eventTypes.entries()) {
        if (!isWebhookEventType(t))
          throw invalidField(`event_types[${i}]`, `unknown event type "${t}" (${WEBHOOK_EVENT_TYPES.join(", ")})`);
        if (!eventTypes.includes(t)) eventTypes.push(t);
      }
      const threshold = input.lowBalanceThreshold;
      if (threshold < 0n || threshold > MAX_BALANCE_NANOS)
        throw invalidField("low_balance_threshold_nano_usd", `must be between 0 and ${MAX_BALANCE_NANOS}`);
      if (threshold > 0n && eventTypes.length > 0 && !eventTypes.includes("balance.low"))
        throw invalidField(
          "low_balance_threshold_nano_usd",
          "is only used by balance.low, which event_types leaves out",
        );
      const description = optionalText(input.description, "description");
      const secret = mintWebhookSecret();
      const now = ctx.clock();
      const record: WebhookRecord = {
        id: newId("wh"),
        accountId,
        url: input.url,
        eventTypes,
        lowBalanceThreshold: threshold > 0n ? nanos(threshold) : null,
        description,
        secret,
        createdAt: now,
        deletedAt: null,
      };
      await store.transaction(async (tx) => {
        // The account row is held until commit, so two concurrent creations cannot both take the last place.
        if (!(await tx.account(accountId, { forUpdate: true })))
          throw new NotFoundError(`account "${accountId}" does not exist`);
        const live = await tx.webhooks(accountId);
        if (live.length >= MAX_WEBHOOKS_PER_ACCOUNT)
          throw new AppError(
            "resource_exhausted",
            `an account has at most ${MAX_WEBHOOKS_PER_ACCOUNT} webhooks; delete one first`,
            "account_id",
          );
        await tx.insertWebhook(record);
        await audit(ctx, tx, who, M + "CreateWebhook", { webhook_id: record.id, account_id: accountId });
      });
      return { webhook: view(record), secret };
    },
    async list(who: Principal, input: { accountId: string }): Promise<WebhookView[]> {
      const accountId = accountOf(who, input.accountId);
      requireAccount(who, accountId);
      await existing(accountId);
      return (await store.webhooks(accountId)).map(view);
    },
    async delete(who: Principal, webhookId: string): Promise<WebhookView> {
      ctx.writes?.take(who);
      return store.transaction(async (tx) => {
        const w = await tx.webhook(id(webhookId, "webhook_id"));
        if (!w || w.deletedAt !== null || !canSee(who, w.accountId))
          throw new NotFoundError(`webhook "${webhookId}" does not exist`);
        const now = ctx.clock();
        await tx.deleteWebhook(w.id, now);
        await audit(ctx, tx, who, M + "DeleteWebhook", { webhook_id: w.id, account_id: w.accountId });
        return view({ ...w, deletedAt: now });
      });
    },
    async deliveries(
      who: Principal,
      input: { accountId: string; webhookId: string; pageSize: number; pageToken: string },
    ): Promise<{ items: WebhookDeliveryView[]; nextPageToken: string }> {
      const accountId = accountOf(who, input.accountId);
      requireAccount(who, accountId);
      await existing(accountId);
      const webhookId = input.webhookId === "" ? undefined : id(input.webhookId, "webhook_id");
      const size = pageSize(input.pageSize);
      const scope = `webhook_deliveries:${accountId}:${webhookId ?? ""}`;
      const after = await ctx.pageTokens.decode(input.pageToken, scope, ["bigint"] as const);
      const rows = await store.webhookDeliveries({
        accountId,
        webhookId,
        beforeId: after ? BigInt(after[0]) : undefined,
        limit: size + 1,
      });
      return pageOf(ctx.pageTokens, rows, size, scope, (last) => [last.id]);
    },
  };
}

/** The key.revoked event of a key (written in the revocation's transaction). */
export function keyRevokedEvent(key: KeyView): WebhookEventInput {
  return {
    type: "key.revoked",
    accountId: key.accountId,
    // A key is revoked once: a repeated RevokeKey call announces nothing new.
    dedupeKey: `key.revoked:${key.id}`,
    data: {
      key_id: key.id,
      name: key.name,
      display_prefix: key.displayPrefix,
      revoked_at: new Date(key.revokedAt ?? 0).toISOString(),
    },
  };
}

/** The key.rotated event of a key after its rotation (written in the rotation's transaction). */
export function keyRotatedEvent(key: KeyView): WebhookEventInput {
  return {
    type: "key.rotated",
    accountId: key.accountId,
    data: {
      key_id: key.id,
      name: key.name,
      display_prefix: key.displayPrefix,
      previous_secret_expires_at:
        key.previousSecretExpiresAt === null ? null : new Date(key.previousSecretExpiresAt).toISOString(),
    },
  };
}
