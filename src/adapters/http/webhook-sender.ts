import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { isIP, type LookupFunction } from "node:net";
import type { TargetPolicy } from "../../domain/webhook-targets.js";
import type { WebhookRequest, WebhookSender, WebhookSendResult } from "../../domain/webhooks.js";

/**
 * A DNS lookup that answers only with addresses the policy allows. The connection dials what this returns, so the
 * address checked is the address used (a name that resolves to a private address, or re-resolves to one later, as
 * in DNS rebinding, is refused at connect time). A name with any refused address is refused whole.
 */
function guardedLookup(policy: TargetPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, verbatim: true, family: options.family }, (error, addresses) => {
      if (error) return callback(error, "", 0);
      const list = addresses as LookupAddress[];
      for (const a of list) {
        // The error reaches the account's delivery log: it says why, never which address (a webhook must not be an
        // oracle into the control plane's DNS, e.g. which internal address redis.internal has).
        if (policy.refusal(a.address)) {
          const error = new Error(
            `${hostname} resolves to a private or reserved address; an operator may allow it in webhooks.allowed_private_networks`,
          );
          return callback(Object.assign(error, { code: "EBLOCKED" }), "", 0);
        }
      }
      if (list.length === 0) return callback(new Error(`${hostname} has no address`), "", 0);
      if ((options as { all?: boolean }).all)
        return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}

/**
 * Creates the HTTP sender of webhook deliveries. Each attempt has one deadline for everything (DNS, connect, TLS,
 * request, response headers); the answer's body is not read; redirects are not followed (a 3xx is a failed
 * attempt, so a receiver cannot bounce the request into a private network); no connection is reused.
 */
export function createWebhookSender(options: { policy: TargetPolicy; timeoutMs: number }): WebhookSender {
  const { policy, timeoutMs } = options;
  const lookup = guardedLookup(policy);
  return {
    send(request: WebhookRequest, signal?: AbortSignal): Promise<WebhookSendResult> {
      return new Promise((resolve) => {
        let url: URL;
        try {
          url = new URL(request.url);
        } catch {
          return resolve({ kind: "failed", error: "the webhook URL does not parse" });
        }
        const host = url.hostname.replace(/^\[|\]$/g, "");
        const refusal = isIP(host) !== 0 ? policy.refusal(host) : undefined;
        if (refusal) return resolve({ kind: "failed", error: refusal });
        let settled = false;
        const done = (result: WebhookSendResult) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve(result);
        };
        const client = url.protocol === "https:" ? https : http;
        const req = client.request(url, {
          method: "POST",
          headers: { ...request.headers, "content-length": Buffer.byteLength(request.body) },
          lookup,
          agent: false,
        });
        const timer = setTimeout(() => {
          done({ kind: "failed", error: `timed out after ${timeoutMs} ms` });
          req.destroy();
        }, timeoutMs);
        const onAbort = () => {
          done({ kind: "failed", error: "cancelled (shutting down)" });
          req.destroy();
        };
        signal?.addEventListener("abort", onAbort);
        req.on("response", (res) => {
          done({ kind: "answered", status: res.statusCode ?? 0 });
          res.destroy();
        });
        req.on("error", (error: NodeJS.ErrnoException) => {
          const reason = error.code === "EBLOCKED" ? error.message : `${error.code ?? "error"}: ${error.message}`;
          done({ kind: "failed", error: reason });
        });
        req.end(request.body);
      });
    },
  };
}
