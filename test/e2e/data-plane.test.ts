// End to end through the data plane with the official `openai` client: control plane (authz + meter), mock
// provider and the data plane on real sockets. The same cases run against the local edge always, and against a
// real Envoy with envoy/envoy.local.yaml whenever an `envoy` binary is on PATH.
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestCost } from "../../src/domain/money.js";
import { envoyOnPath, startStack, type DataPlaneKind, type Stack } from "./stack.js";

const USER = (text: string) => [{ role: "user" as const, content: text }];

function describeDataPlane(kind: DataPlaneKind): void {
  describe(`data plane e2e [${kind}]`, () => {
    let stack: Stack;
    const client = (apiKey: string, extra: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
      new OpenAI({ apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000, ...extra });

    /** The account's usage rows once the meter has billed at least one (up to 5 s). */
    const usageRows = async (accountId: string) => {
      let rows = await stack.plane.stores.ledger.usage({ accountId });
      for (let i = 0; i < 50 && rows.length === 0; i++) {
        await sleep(100);
        rows = await stack.plane.stores.ledger.usage({ accountId });
      }
      return rows;
    };

    beforeAll(async () => {
      stack = await startStack(kind);
    });
    afterAll(async () => {
      await stack?.close();
    });

    it("200: a chat completion comes back, the provider got the injected credential and the upstream model", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      const { data, response } = await client(secret)
        .chat.completions.create({ model: "gpt-oss-120b", messages: USER("hello [[mock:tokens=7]]") })
        .withResponse();
      expect(data.choices[0]?.message.content).toBeTruthy();
      expect(data.usage?.completion_tokens).toBe(7);
      expect(response.headers.get("x-tollgate-decision-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(response.headers.get("x-request-id")).toBeTruthy();
      expect(stack.mock.requests).toHaveLength(1);
      const sent = stack.mock.requests[0]!;
      expect(sent.path).toBe("/v1/chat/completions");
      expect(sent.headers.authorization).toBe("Bearer mock-openai");
      expect(JSON.stringify(sent.headers)).not.toContain(secret);
      expect(Object.keys(sent.headers).filter((h) => h.startsWith("x-tollgate-"))).toEqual([]);
      expect((sent.body as { model: string }).model).toBe("gpt-oss-120b");
    });

    it("200: the provider path and credential follow the model's provider (google)", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      await client(secret).chat.completions.create({ model: "gemini-3.1-pro", messages: USER("hi") });
      const sent = stack.mock.requests[0]!;
      expect(sent.path).toBe("/v1beta/openai/chat/completions");
      expect(sent.headers.authorization).toBe("Bearer mock-google");
      expect((sent.body as { model: string }).model).toBe("gemini-3.1-pro-preview");
    });

    it("200 stream: chunks arrive and the final usage is present because include_usage was injected", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      const stream = await client(secret).chat.completions.create({
        model: "gpt-oss-120b",
        messages: USER("stream please [[mock:tokens=12]]"),
        stream: true,
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
      expect(text.length).toBeGreaterThan(0);
      const last = chunks[chunks.length - 1]!;
      expect(last.usage?.completion_tokens).toBe(12);
      expect((stack.mock.requests[0]!.body as { stream_options?: unknown }).stream_options).toEqual({
        include_usage: true,
      });
    });

    it("200 GET /v1/models: lists exactly the models the key may use", async () => {
      const basic = await stack.account("basic");
      const snapshot = stack.plane.snapshot();
      const plan = snapshot.plans.get("basic")!;
      const expected = [...snapshot.models.values()]
        .filter((m) => !m.retired && plan.tiers.includes(m.tier))
        .map((m) => m.id)
        .sort();
      const listed = [];
      for await (const model of client(basic.secret).models.list()) listed.push(model.id);
      expect(listed.sort()).toEqual(expected);

      const scoped = await stack.account("pro", { allowedModels: ["gpt-oss-120b", "claude-haiku-4.5"] });
      const scopedList = [];
      for await (const model of client(scoped.secret).models.list()) scopedList.push(model.id);
      expect(scopedList.sort()).toEqual(["claude-haiku-4.5", "gpt-oss-120b"]);
    });

    it("a client-sent x-tollgate-provider / x-tollgate-upstream-model neither reaches the provider nor changes the route", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      await client(secret, {
        defaultHeaders: { "x-tollgate-provider": "anthropic", "x-tollgate-upstream-model": "evil-model" },
      }).chat.completions.create({ model: "gpt-oss-120b", messages: USER("hi") });
      const sent = stack.mock.requests[0]!;
      expect(sent.headers.authorization).toBe("Bearer mock-openai");
      expect(Object.keys(sent.headers).filter((h) => h.startsWith("x-tollgate-"))).toEqual([]);
      expect((sent.body as { model: string }).model).toBe("gpt-oss-120b");
    });

    // Regression: client x-tollgate-* headers must reach authz (allowed_headers prefix) so it strips them; otherwise the
    // usage filter would obey a client's x-tollgate-stream and inject stream_options into a non-stream body.
    it("a client-sent x-tollgate-stream does not change the body sent upstream", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      await client(secret, { defaultHeaders: { "x-tollgate-stream": "1" } }).chat.completions.create({
        model: "gpt-oss-120b",
        messages: USER("hi"),
      });
      expect((stack.mock.requests[0]!.body as { stream_options?: unknown }).stream_options).toBeUndefined();
    });

    describe("every verdict reaches the SDK as its typed error", () => {
      async function failure(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
        const error = await promise.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(OpenAI.APIError);
        return error as InstanceType<typeof OpenAI.APIError>;
      }
      const chat = (c: OpenAI, model = "gpt-oss-120b") => c.chat.completions.create({ model, messages: USER("hi") });

      it("401 missing_api_key", async () => {
        const e = await failure(chat(client("unused", { defaultHeaders: { authorization: null } })));
        expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
        expect(e.code).toBe("missing_api_key");
      });
      it("401 invalid_api_key", async () => {
        const e = await failure(chat(client("tg_" + "a".repeat(40))));
        expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
        expect(e.code).toBe("invalid_api_key");
      });
      it("401 expired_api_key", async () => {
        const { secret } = await stack.account("pro", { expiresAt: Date.now() - 1_000 });
        const e = await failure(chat(client(secret)));
        expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
        expect(e.code).toBe("expired_api_key");
      });
      it("401 revoked_api_key", async () => {
        const { secret, keyId } = await stack.account("pro");
        await stack.plane.keys.revoke(keyId);
        const e = await failure(chat(client(secret)));
        expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
        expect(e.code).toBe("revoked_api_key");
      });
      it("400 invalid_request (no model)", async () => {
        const { secret } = await stack.account("pro");
        const e = await failure(client(secret).chat.completions.create({ messages: USER("hi") } as never));
        expect(e).toBeInstanceOf(OpenAI.BadRequestError);
        expect(e.code).toBe("invalid_request");
      });
      it("404 model_not_found", async () => {
        const { secret } = await stack.account("pro");
        const e = await failure(chat(client(secret), "no-such-model"));
        expect(e).toBeInstanceOf(OpenAI.NotFoundError);
        expect(e.code).toBe("model_not_found");
      });
      it("403 model_not_permitted (premium model on the basic plan)", async () => {
        const { secret } = await stack.account("basic");
        stack.mock.clear();
        const e = await failure(chat(client(secret), "gpt-5.5"));
        expect(e).toBeInstanceOf(OpenAI.PermissionDeniedError);
        expect(e.code).toBe("model_not_permitted");
        expect(stack.mock.requests).toHaveLength(0);
      });
      it("402 insufficient_credits (unfunded account)", async () => {
        const { secret } = await stack.account("pro", {}, 0n);
        const e = await failure(chat(client(secret)));
        expect(e.status).toBe(402);
        expect(e.code).toBe("insufficient_credits");
      });
      it("429 rate_limit_exceeded: a basic-plan key's 11th request in a minute", async () => {
        const { secret } = await stack.account("basic");
        const c = client(secret);
        // max_tokens keeps the TPM reservation small, so requests per minute is the limit that trips.
        const small = () => c.chat.completions.create({ model: "gpt-oss-120b", messages: USER("hi"), max_tokens: 16 });
        for (let i = 0; i < 10; i++) await small();
        const e = await failure(small());
        expect(e).toBeInstanceOf(OpenAI.RateLimitError);
        expect(e.code).toBe("rate_limit_exceeded");
        expect(e.headers?.get("retry-after")).toBeTruthy();
        expect(e.headers?.get("x-ratelimit-remaining-requests")).toBe("0");
      });
    });

    it("access logs: the file log line has envoy.yaml's keys and the authz + usage metadata of the request", async () => {
      const { secret, accountId, keyId } = await stack.account("pro");
      const { response } = await client(secret)
        .chat.completions.create({ model: "gpt-oss-120b", messages: USER("log me [[mock:tokens=9]]") })
        .withResponse();
      const requestId = response.headers.get("x-request-id")!;
      const decisionId = response.headers.get("x-tollgate-decision-id")!;
      await stack.flushAccessLogs();
      const line = stack.fileLog().find((l) => l.request_id === requestId)!;
      expect(line).toBeDefined();
      expect(Object.keys(line)).toEqual([
        "start_time",
        "request_id",
        "response_code",
        "duration_ms",
        "response_flags",
        "request_tx_duration_ms",
        "authz",
        "usage",
        "upstream_host",
        "log_type",
      ]);
      expect(line).toMatchObject({
        response_code: 200,
        log_type: "DownstreamEnd",
        authz: { decision_id: decisionId, account_id: accountId, key_id: keyId },
      });
      expect(line.usage).toMatchObject({ completion_tokens: 9, source: "provider", complete: true });
      // The ALS entry carried the authz metadata to the meter: the usage row has the Check's decision id.
      const rows = await usageRows(accountId);
      expect(rows.find((r) => r.requestId === requestId)?.decisionId).toBe(decisionId);
    });

    it("metering: a client that leaves before a non-streaming answer is billed its prompt estimate, not nothing", async () => {
      const { secret, accountId } = await stack.account("pro");
      const before = await stack.plane.stores.ledger.balance(accountId);
      // The mock answers after 3 s; the client gives up after 0.4 s, once the provider has the whole prompt.
      const gone = await client(secret, { timeout: 400 })
        .chat.completions.create({
          model: "gpt-oss-120b",
          messages: USER("a prompt the provider reads [[mock:slow=3000]]"),
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(gone).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
      await sleep(200);
      await stack.flushAccessLogs();
      const rows = await usageRows(accountId);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ estimated: true, completionTokens: 0, status: 0 });
      expect(rows[0]!.promptTokens).toBeGreaterThan(0);
      expect(rows[0]!.cost).toBeGreaterThan(0n);
      const after = await stack.plane.stores.ledger.balance(accountId);
      expect(before.balance - after.balance).toBe(rows[0]!.cost);
    });

    it("metering: the usage log and the balance show the exact tokens and cost", async () => {
      const { secret, accountId } = await stack.account("pro");
      const before = await stack.plane.stores.ledger.balance(accountId);
      const data = await client(secret).chat.completions.create({
        model: "gpt-oss-120b",
        messages: USER("bill me [[mock:tokens=25]]"),
      });
      const usage = data.usage!;
      const model = stack.plane.snapshot().models.get("gpt-oss-120b")!;
      const cost = requestCost(
        {
          promptTokens: usage.prompt_tokens,
          cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
          completionTokens: usage.completion_tokens,
        },
        model.prices,
      );
      await stack.flushAccessLogs();
      const rows = await usageRows(accountId);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        promptTokens: usage.prompt_tokens,
        completionTokens: 25,
        estimated: false,
        cost,
      });
      const after = await stack.plane.stores.ledger.balance(accountId);
      expect(before.balance - after.balance).toBe(cost);
    });

    /** The account's single usage row once billed, and the exact cost of `usage` at the model's prices. */
    async function billedExactly(accountId: string, usage: OpenAI.CompletionUsage, completionTokens: number) {
      expect(usage.completion_tokens).toBe(completionTokens);
      const model = stack.plane.snapshot().models.get("gpt-oss-120b")!;
      const cost = requestCost(
        {
          promptTokens: usage.prompt_tokens,
          cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
          completionTokens: usage.completion_tokens,
        },
        model.prices,
      );
      await stack.flushAccessLogs();
      const rows = await usageRows(accountId);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        promptTokens: usage.prompt_tokens,
        completionTokens,
        estimated: false,
        cost,
      });
    }

    it("gzip: a provider that compresses whenever allowed is billed exactly (JSON)", async () => {
      const { secret, accountId } = await stack.account("pro");
      stack.mock.clear();
      const data = await client(secret).chat.completions.create({
        model: "gpt-oss-120b",
        messages: USER("zip me [[mock:gzip=1]] [[mock:tokens=23]]"),
      });
      expect(data.choices[0]?.message.content).toBe(`mock${" mock".repeat(22)}`);
      await billedExactly(accountId, data.usage!, 23);
      expect(stack.mock.requests[0]!.headers["accept-encoding"]).toBe("identity");
    });

    it("gzip: a provider that compresses whenever allowed is billed exactly (stream)", async () => {
      const { secret, accountId } = await stack.account("pro");
      stack.mock.clear();
      const stream = await client(secret).chat.completions.create({
        model: "gpt-oss-120b",
        messages: USER("zip the stream [[mock:gzip=1]] [[mock:tokens=17]]"),
        stream: true,
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe(`mock${" mock".repeat(16)}`);
      await billedExactly(accountId, chunks.at(-1)!.usage!, 17);
      expect(stack.mock.requests[0]!.headers["accept-encoding"]).toBe("identity");
    });

    it("privacy: the provider gets no client address, no org/project selector, Accept-Encoding: identity; Envoy's request id", async () => {
      const { secret } = await stack.account("pro");
      stack.mock.clear();
      const { response } = await client(secret, {
        defaultHeaders: {
          "x-forwarded-for": "198.51.100.7",
          forwarded: "for=198.51.100.7",
          "x-real-ip": "198.51.100.7",
          "x-envoy-external-address": "198.51.100.7",
          "openai-organization": "org-someone-else",
          "openai-project": "proj-someone-else",
          "x-goog-user-project": "someone-elses-project",
          "x-request-id": "client-chosen-id",
        },
      })
        .chat.completions.create({ model: "gpt-oss-120b", messages: USER("hi") })
        .withResponse();
      const sent = stack.mock.requests[0]!.headers;
      for (const name of [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-envoy-external-address",
        "openai-organization",
        "openai-project",
        "x-goog-user-project",
      ]) {
        expect(sent[name], name).toBeUndefined();
      }
      expect(sent["accept-encoding"]).toBe("identity");
      expect(JSON.stringify(sent)).not.toContain("198.51.100.7");
      // Nor the peer's address (the client is on loopback here; Host is the provider's own, also loopback).
      const values = Object.entries(sent).filter(([name]) => name !== "host");
      expect(JSON.stringify(values)).not.toContain("127.0.0.1");
      // The id Envoy generated (the client's is replaced), the same one the client and the access log see.
      expect(sent["x-request-id"]).toBe(response.headers.get("x-request-id"));
      expect(sent["x-request-id"]).not.toBe("client-chosen-id");
    });

    // Last: it stops authz for the rest of this stack.
    it("503 when authz is down (fail closed: InternalServerError, nothing reaches the provider)", async () => {
      const { secret } = await stack.account("pro");
      await stack.plane.authz!.close(0);
      stack.mock.clear();
      const e = await chat503(client(secret));
      expect(e).toBeInstanceOf(OpenAI.InternalServerError);
      expect(e.status).toBe(503);
      // Envoy's own empty 503 is rewritten by local_reply_config into authz's `unavailable` answer.
      expect(e.code).toBe("unavailable");
      expect(e.type).toBe("server_error");
      expect(e.headers?.get("retry-after")).toBe("1");
      expect(e.headers?.get("content-type")).toBe("application/json");
      expect(stack.mock.requests).toHaveLength(0);
    });
    async function chat503(c: OpenAI) {
      return c.chat.completions.create({ model: "gpt-oss-120b", messages: USER("hi") }).then(
        () => {
          throw new Error("expected a 503");
        },
        (e: InstanceType<typeof OpenAI.APIError>) => e,
      );
    }
  });
}

describeDataPlane("edge");
if (envoyOnPath()) describeDataPlane("envoy");
else {
  console.log("skipping the real-Envoy e2e variant: no `envoy` on PATH");
  describe.skip("data plane e2e [envoy]", () => {
    it("needs an envoy binary on PATH", () => {});
  });
}
