import { toJson as protoJson } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { formatUsd, nanos, parseUsd } from "../../domain/money.js";
import {
  ListWebhookDeliveriesResponseSchema,
  WebhookDeliveryStatus,
  WebhookSchema,
  type Webhook,
} from "../../gen/tollgate/admin/v1/webhooks_pb.js";
import { group, parse, required, UsageError, type Handler } from "../cli-kit.js";
import { printTable, type Output } from "../output.js";
import { withAdmin } from "./admin-api.js";

const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "-");
const webhookJson = (w: Webhook) => protoJson(WebhookSchema, w, { useProtoFieldName: true, alwaysEmitImplicit: true });
const STATUS = new Map<WebhookDeliveryStatus, string>([
  [WebhookDeliveryStatus.PENDING, "pending"],
  [WebhookDeliveryStatus.DELIVERED, "delivered"],
  [WebhookDeliveryStatus.FAILED, "failed"],
  [WebhookDeliveryStatus.CANCELLED, "cancelled"],
  [WebhookDeliveryStatus.DROPPED, "dropped"],
]);

function showWebhooks(out: Output, webhooks: Webhook[]): void {
  out.result(webhooks.map(webhookJson), () =>
    printTable(
      webhooks.map((w) => ({
        id: w.id,
        url: w.url,
        events: w.eventTypes.join(",") || "all",
        low_balance: w.lowBalanceThresholdNanoUsd > 0n ? `$${formatUsd(nanos(w.lowBalanceThresholdNanoUsd))}` : "-",
        created: when(w.createdAt),
        description: w.description,
      })),
    ),
  );
}

function usdFlag(text: string | undefined, flag: string): bigint {
  if (text === undefined) return 0n;
  try {
    const amount = parseUsd(text);
    if (amount < 0n) throw new Error("negative");
    return amount;
  } catch {
    throw new UsageError(`${flag} must be an amount of USD with at most 9 decimals (e.g. 5 or 0.50), not "${text}"`);
  }
}

/** `tollgate webhooks create|list|delete|deliveries`: alerts by webhook, through the admin API's WebhookService. */
export const webhooksApi: Handler = group("webhooks", {
  async create(args, out) {
    const { values } = parse(args, {
      account: { type: "string" },
      url: { type: "string" },
      events: { type: "string" },
      "low-balance-usd": { type: "string" },
      description: { type: "string" },
    });
    const accountId = required(values.account, "--account");
    const url = required(values.url, "--url");
    const eventTypes = values.events === undefined ? [] : values.events.split(",").map((e) => e.trim());
    const r = await withAdmin(values, (c) =>
      c.webhooks.createWebhook({
        accountId,
        url,
        eventTypes,
        lowBalanceThresholdNanoUsd: usdFlag(values["low-balance-usd"], "--low-balance-usd"),
        description: values.description ?? "",
      }),
    );
    out.result(
      { ...(webhookJson(r.webhook!) as object), secret: r.secret },
      () =>
        `created webhook ${r.webhook!.id}\n\n  signing secret: ${r.secret}\n\nThis secret is shown once; store it now (receivers verify the Tollgate-Signature header with it).`,
    );
  },
  async list(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const r = await withAdmin(values, (c) => c.webhooks.listWebhooks({ accountId: values.account ?? "" }));
    showWebhooks(out, r.webhooks);
  },
  async delete(args, out) {
    const { values, positionals } = parse(args, {}, 1);
    const webhookId = required(positionals[0], "WEBHOOK_ID");
    const r = await withAdmin(values, (c) => c.webhooks.deleteWebhook({ webhookId }));
    out.result(webhookJson(r.webhook!), () => `deleted webhook ${r.webhook!.id} (pending deliveries cancelled)`);
  },
  async deliveries(args, out) {
    const { values } = parse(args, {
      account: { type: "string" },
      webhook: { type: "string" },
      limit: { type: "string" },
    });
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new UsageError(`--limit must be a positive integer, not "${values.limit}"`);
    const r = await withAdmin(values, (c) =>
      c.webhooks.listWebhookDeliveries({
        accountId: values.account ?? "",
        webhookId: values.webhook ?? "",
        pageSize: limit,
      }),
    );
    const json = protoJson(ListWebhookDeliveriesResponseSchema, r, {
      useProtoFieldName: true,
      alwaysEmitImplicit: true,
    }) as { deliveries: unknown[] };
    out.result(json.deliveries, () =>
      printTable(
        r.deliveries.map((d) => ({
          created: when(d.createdAt),
          event: d.eventId,
          type: d.eventType,
          webhook: d.webhookId,
          status: STATUS.get(d.status) ?? "?",
          attempts: d.attempts,
          last: d.lastStatusCode || "-",
          error: d.lastError,
          next: d.status === WebhookDeliveryStatus.PENDING ? when(d.nextAttemptAt) : "-",
        })),
      ),
    );
  },
});
