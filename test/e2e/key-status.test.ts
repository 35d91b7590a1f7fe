// GET /v1/key through the data plane with the official `openai` client's own HTTP method: the calling key as it stands
// (plan, models, limits and what remains of each window, the account's balance), and the same figures from the CLI.
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdminTokenStore } from "../../src/admin/tokens.js";
import { run } from "../../src/cli/main.js";
import { toJson, type Output } from "../../src/cli/output.js";
import { envoyOnPath, startStack, type DataPlaneKind, type Stack } from "./stack.js";

interface Limit {
  limit: number;
  remaining: number;
  reset_seconds: number;
}
interface KeyStatus {
  object: string;
  id: string;
  name: string;
  account_id: string;
  plan: { id: string; name: string };
  models: string[];
  limits: {
    requests_per_minute: Limit;
    tokens_per_minute: Limit;
    requests_per_day: Limit | null;
    tokens_per_day: Limit | null;
    concurrency: { limit: number; in_flight: number; remaining: number } | null;
  };
  balance: { balance_nano_usd: string; balance_usd: string };
  budget: unknown;
}

function describeKeyStatus(kind: DataPlaneKind): void {
  describe(`GET /v1/key e2e [${kind}]`, () => {
    let stack: Stack;
    const saved = { ...process.env };
    const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });

    /** Runs the CLI in process against the stack's admin API, with --json. */
    async function tollgate(...args: string[]): Promise<Record<string, unknown>> {
      let result: Record<string, unknown> = {};
      let error = "";
      const out: Output = {
        json: true,
        result: (value) => (result = JSON.parse(toJson(value))),
        info: () => {},
        error: (line) => (error = line),
      };
      const code = await run([...args, "--json"], out);
      expect(code, `tollgate ${args.join(" ")}: ${error}`).toBe(0);
      return result;
    }

    beforeAll(async () => {
      stack = await startStack(kind, { admin: true });
      const token = await createAdminTokenStore(stack.plane.stores.db).create({ kind: "operator" }, "e2e");
      process.env.TOLLGATE_ADMIN_URL = stack.adminUrl!;
      process.env.TOLLGATE_ADMIN_TOKEN = token.secret;
    });
    afterAll(async () => {
      process.env = saved;
      await stack?.close();
    });

    it("200: the key's plan, models, limits with what remains, and the balance; the CLI shows the same numbers", async () => {
      const { secret, accountId, keyId } = await stack.account("basic", { requestsPerDay: 100, maxConcurrency: 4 });
      const c = client(secret);
      let used = 0;
      for (const tokens of [7, 11, 13]) {
        const r = await c.chat.completions.create({
          model: "gpt-oss-120b",
          messages: [{ role: "user", content: `hello [[mock:tokens=${tokens}]]` }],
        });
        used += r.usage!.prompt_tokens + r.usage!.completion_tokens;
      }
      // The meter settles each request's window to what it used once its access-log entry is billed.
      await stack.flushAccessLogs();
      type Aggregate = { requests: string; prompt_tokens: string; completion_tokens: string };
      let summary: Aggregate[] = [];
      for (let i = 0; i < 50 && summary[0]?.requests !== "3"; i++) {
        if (i > 0) await sleep(100);
        summary = (await tollgate("usage", "summary", "--account", accountId)) as unknown as Aggregate[];
      }
      expect(summary).toHaveLength(1);
      const billed = Number(summary[0]!.prompt_tokens) + Number(summary[0]!.completion_tokens);
      expect(billed).toBe(used);

      const status = await c.get<KeyStatus>("/key");
      expect(status).toMatchObject({
        object: "key",
        id: keyId,
        name: "e2e",
        account_id: accountId,
        plan: { id: "basic", name: "Basic" },
        budget: null,
      });
      const listed = [];
      for await (const m of c.models.list()) listed.push(m.id);
      expect(status.models.sort()).toEqual(listed.sort());
      expect(JSON.stringify(status)).not.toContain(secret);

      // The CLI's view of the same key, plan and account.
      const key = await tollgate("keys", "get", keyId);
      const plans = (await tollgate("plans", "list")) as unknown as Array<Record<string, unknown>>;
      const basic = plans.find((p) => p.id === "basic")!;
      const balance = await tollgate("credits", "balance", "--account", accountId);

      expect(status.limits.requests_per_minute).toMatchObject({ limit: basic.requests_per_minute, remaining: 7 });
      expect(status.limits.requests_per_minute.reset_seconds).toBeGreaterThan(0);
      expect(status.limits.tokens_per_minute).toMatchObject({
        limit: Number(basic.tokens_per_minute),
        remaining: Number(basic.tokens_per_minute) - billed, // settled: what was used, not what was expected
      });
      expect(status.limits.requests_per_day).toMatchObject({ limit: key.requests_per_day, remaining: 97 });
      expect(status.limits.tokens_per_day).toBeNull();
      expect(status.limits.concurrency).toEqual({ limit: key.max_concurrency, in_flight: 0, remaining: 4 });
      expect(status.balance.balance_nano_usd).toBe(balance.balance_nano_usd);
    });

    it("401 without a key; 404 for other methods on /v1/key", async () => {
      const e = await client("tg_" + "x".repeat(40))
        .get("/key")
        .catch((err: unknown) => err as InstanceType<typeof OpenAI.APIError>);
      expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(401);
      const { secret } = await stack.account("basic");
      const post = await client(secret)
        .post("/key", { body: {} })
        .catch((err: unknown) => err as InstanceType<typeof OpenAI.APIError>);
      expect((post as InstanceType<typeof OpenAI.APIError>).status).toBe(404);
    });
  });
}

describeKeyStatus("edge");
if (envoyOnPath()) describeKeyStatus("envoy");
