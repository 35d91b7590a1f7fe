// A fifth provider is one catalogue entry: an OpenAI-compatible host serving GPT-OSS 120B is added to the catalogue,
// `tollgate envoy render` derives its route and cluster, and a request through the local edge (routing from that
// rendered YAML, as Envoy would) reaches that host, with the provider's path, model and credential, and is billed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";
import { renderEnvoy } from "../../src/dataplane/envoy-config/profile.js";
import { providerUpstreams } from "../../src/edge/envoy-routes.js";
import { createMockProvider, type MockProvider } from "../../src/mock-provider/mock-provider.js";
import { parseBootstrapYaml } from "../support/envoy-bootstrap.js";
import { envoyOnPath, startStack, type Stack } from "./stack.js";

const fixture = join(import.meta.dirname, "../contract/fixtures/catalogue/fifth-provider.yaml");

describe("a fifth provider through the local edge [edge]", () => {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-fifth-"));
  let oss: MockProvider;
  let stack: Stack;
  let rendered: string;

  beforeAll(async () => {
    // The host serving GPT-OSS: its own mock, reached over plain HTTP as a host inside the network would be.
    oss = await createMockProvider();
    const catalogueFile = join(dir, "catalogue.yaml");
    writeFileSync(catalogueFile, readFileSync(fixture, "utf8").replace("https://gpt-oss.example.net:8443", oss.url));
    rendered = renderEnvoy({ profile: "production", config: loadConfig({ env: {} }), catalogueFile });
    stack = await startStack("edge", { catalogueFile, upstreams: providerUpstreams(rendered) });
  });
  afterAll(async () => {
    await stack?.close();
    await oss?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the rendered config passes the strict Bootstrap parse and routes oss-host to the host's origin", () => {
    expect(() => parseBootstrapYaml(rendered)).not.toThrow();
    expect(providerUpstreams(rendered)["oss-host"]).toBe(oss.url);
  });

  it("200: gpt-oss-120b reaches the fifth provider's host with its path, model and credential, and is billed", async () => {
    const { secret, accountId } = await stack.account("pro");
    const client = new OpenAI({ apiKey: secret, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });
    const completion = await client.chat.completions.create({
      model: "gpt-oss-120b",
      messages: [{ role: "user", content: "hello [[mock:tokens=9]]" }],
    });
    expect(completion.usage?.completion_tokens).toBe(9);
    expect(stack.mock.requests).toEqual([]);
    expect(oss.requests).toHaveLength(1);
    const sent = oss.requests[0]!;
    expect(sent.path).toBe("/openai/v1/chat/completions");
    expect(sent.headers.authorization).toBe("Bearer mock-oss-host");
    expect((sent.body as { model: string }).model).toBe("openai/gpt-oss-120b");

    await stack.flushAccessLogs();
    let rows = await stack.plane.stores.ledger.usage({ accountId });
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      await sleep(100);
      rows = await stack.plane.stores.ledger.usage({ accountId });
    }
    expect(rows.map((r) => [r.model, r.provider, r.completionTokens, r.estimated])).toEqual([
      ["gpt-oss-120b", "oss-host", 9, false],
    ]);
  });

  it("200 stream: the stream comes from the fifth provider and carries its usage", async () => {
    const { secret } = await stack.account("pro");
    oss.clear();
    const client = new OpenAI({ apiKey: secret, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });
    const stream = await client.chat.completions.create({
      model: "gpt-oss-120b",
      messages: [{ role: "user", content: "stream [[mock:tokens=5]]" }],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(5);
    expect(oss.requests.map((r) => r.path)).toEqual(["/openai/v1/chat/completions"]);
  });
});

// The data plane runs the re-rendered local bootstrap: the local edge always, a real Envoy when one is on PATH.
for (const kind of ["edge", ...(envoyOnPath() ? ["envoy" as const] : [])] as const) {
  describe(`a re-rendered envoy.local.yaml with a fifth provider routes it [${kind}]`, () => {
    const dir = mkdtempSync(join(tmpdir(), "tollgate-fifth-local-"));
    let stack: Stack;

    beforeAll(async () => {
      const envoyYamlPath = join(dir, "envoy.local.yaml");
      writeFileSync(
        envoyYamlPath,
        renderEnvoy({ profile: "local", config: loadConfig({ env: {} }), catalogueFile: fixture }),
      );
      // No upstreams given: the data plane takes its provider routes from the rendered file (all on the stack's mock).
      stack = await startStack(kind, { catalogueFile: fixture, envoyYamlPath });
    });
    afterAll(async () => {
      await stack?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("200: gpt-oss-120b goes to oss-host's route and reaches the mock with that provider's path", async () => {
      const { secret } = await stack.account("pro");
      const client = new OpenAI({ apiKey: secret, baseURL: stack.baseURL, maxRetries: 0, timeout: 10_000 });
      await client.chat.completions.create({ model: "gpt-oss-120b", messages: [{ role: "user", content: "hi" }] });
      expect(stack.mock.requests.map((r) => [r.path, r.headers.authorization])).toEqual([
        ["/openai/v1/chat/completions", "Bearer mock-oss-host"],
      ]);
    });
  });
}
