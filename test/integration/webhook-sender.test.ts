import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWebhookSender } from "../../src/adapters/http/webhook-sender.js";
import { createTargetPolicy } from "../../src/domain/webhook-targets.js";

/** A loopback server standing in for something internal an account must not reach; counts what reaches it. */
function internal(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const server = http.createServer(handler);
  let connections = 0;
  let requests = 0;
  server.on("connection", () => connections++);
  server.on("request", () => requests++);
  return {
    server,
    port: () => (server.address() as AddressInfo).port,
    counts: () => ({ connections, requests }),
    listen: () => new Promise<void>((r) => server.listen(0, "127.0.0.1", r)),
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

const request = (url: string) => ({ url, headers: { "content-type": "application/json" }, body: "{}" });

describe("webhook sender: the SSRF guard holds at delivery time, on the address actually dialled", () => {
  const target = internal((_req, res) => res.writeHead(200).end("internal secrets"));
  const silent = internal(() => undefined);
  const redirector = internal((_req, res) =>
    res.writeHead(302, { location: `http://127.0.0.1:${target.port()}/admin` }).end(),
  );
  beforeAll(async () => {
    await Promise.all([target.listen(), silent.listen(), redirector.listen()]);
  });
  afterAll(async () => {
    await Promise.all([target.close(), silent.close(), redirector.close()]);
  });

  it("refuses a name that resolves to loopback before connecting (the URL named no address)", async () => {
    const sender = createWebhookSender({ policy: createTargetPolicy({ allowedPrivateNetworks: [] }), timeoutMs: 2000 });
    const result = await sender.send(request(`http://localhost:${target.port()}/hook`));
    expect(result).toMatchObject({ kind: "failed" });
    expect(result.kind === "failed" && result.error).toMatch(/localhost resolves to .* private/);
    expect(target.counts()).toEqual({ connections: 0, requests: 0 });
  });

  it("a refused name's error, which the account reads in its delivery log, names no address it resolved to", async () => {
    // Otherwise a webhook is an oracle into the control plane's DNS: https://redis.internal/ → "resolves to 10.3.2.1".
    const sender = createWebhookSender({ policy: createTargetPolicy({ allowedPrivateNetworks: [] }), timeoutMs: 2000 });
    const result = await sender.send(request(`http://localhost:${target.port()}/hook`));
    expect(result.kind === "failed" && result.error).toMatch(/private/);
    expect(result.kind === "failed" && result.error).not.toMatch(/127\.0\.0\.1|::1/);
  });

  it("refuses a private address literal without connecting", async () => {
    const sender = createWebhookSender({ policy: createTargetPolicy({ allowedPrivateNetworks: [] }), timeoutMs: 2000 });
    for (const url of [`http://127.0.0.1:${target.port()}/`, `http://[::ffff:127.0.0.1]:${target.port()}/`]) {
      const result = await sender.send(request(url));
      expect(result.kind === "failed" && result.error, url).toMatch(/private/);
    }
    expect(target.counts()).toEqual({ connections: 0, requests: 0 });
  });

  it("does not follow a redirect (a receiver cannot bounce the POST into the network)", async () => {
    const before = target.counts().requests;
    const sender = createWebhookSender({
      policy: createTargetPolicy({ allowedPrivateNetworks: ["127.0.0.0/8"] }),
      timeoutMs: 2000,
    });
    expect(await sender.send(request(`http://127.0.0.1:${redirector.port()}/hook`))).toEqual({
      kind: "answered",
      status: 302,
    });
    expect(target.counts().requests).toBe(before);
  });

  it("gives a receiver that never answers one deadline, then moves on", async () => {
    const sender = createWebhookSender({
      policy: createTargetPolicy({ allowedPrivateNetworks: ["127.0.0.0/8"] }),
      timeoutMs: 300,
    });
    const started = performance.now();
    const result = await sender.send(request(`http://127.0.0.1:${silent.port()}/hook`));
    expect(result).toEqual({ kind: "failed", error: "timed out after 300 ms" });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });
});
