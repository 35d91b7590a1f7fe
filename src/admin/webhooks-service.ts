import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { WebhookView } from "../app/webhooks.js";
import type { WebhookDeliveryStatus as Status, WebhookDeliveryView } from "../domain/webhooks.js";
import {
  ListWebhookDeliveriesResponseSchema,
  WebhookDeliverySchema,
  WebhookDeliveryStatus,
  WebhookSchema,
  type WebhookDelivery,
  type Webhook,
  type WebhookService,
} from "../gen/tollgate/admin/v1/webhooks_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { ts } from "./views.js";

const STATUS: Record<Status, WebhookDeliveryStatus> = {
  pending: WebhookDeliveryStatus.PENDING,
  delivered: WebhookDeliveryStatus.DELIVERED,
  failed: WebhookDeliveryStatus.FAILED,
  cancelled: WebhookDeliveryStatus.CANCELLED,
  dropped: WebhookDeliveryStatus.DROPPED,
};

/** A webhook as the API shows it: never its secret. */
export function webhookMessage(w: WebhookView): Webhook {
  return create(WebhookSchema, {
    id: w.id,
    accountId: w.accountId,
    url: w.url,
    eventTypes: [...w.eventTypes],
    lowBalanceThresholdNanoUsd: w.lowBalanceThreshold ?? 0n,
    description: w.description,
    createdAt: ts(w.createdAt),
    deletedAt: ts(w.deletedAt),
  });
}

/** One row of the delivery log. */
export function deliveryMessage(d: WebhookDeliveryView): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    id: d.id,
    webhookId: d.webhookId,
    eventId: d.eventId,
    eventType: d.eventType,
    status: STATUS[d.status],
    attempts: d.attempts,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: ts(d.createdAt),
    lastAttemptAt: ts(d.lastAttemptAt),
    nextAttemptAt: ts(d.nextAttemptAt),
    deliveredAt: ts(d.deliveredAt),
  });
}

/** WebhookService: protobuf ↔ the webhook use cases (the secret only in CreateWebhook's answer). */
export function webhookService(deps: AdminDeps): ServiceImpl<typeof WebhookService> {
  const ops = deps.ops.webhooks;
  return {
    async createWebhook(req, ctx) {
      const created = await ops.create(await caller(deps.authenticate, ctx), {
        accountId: req.accountId,
        url: req.url,
        eventTypes: req.eventTypes,
        lowBalanceThreshold: req.lowBalanceThresholdNanoUsd,
        description: req.description,
      });
      return { webhook: webhookMessage(created.webhook), secret: created.secret };
    },
    async listWebhooks(req, ctx) {
      const items = await ops.list(await caller(deps.authenticate, ctx), { accountId: req.accountId });
      return { webhooks: items.map(webhookMessage) };
    },
    async deleteWebhook(req, ctx) {
      return { webhook: webhookMessage(await ops.delete(await caller(deps.authenticate, ctx), req.webhookId)) };
    },
    async listWebhookDeliveries(req, ctx) {
      const { items, nextPageToken } = await ops.deliveries(await caller(deps.authenticate, ctx), req);
      return create(ListWebhookDeliveriesResponseSchema, { deliveries: items.map(deliveryMessage), nextPageToken });
    },
  };
}
