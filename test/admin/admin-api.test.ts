import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  AccountService,
  ListAccountsRequestSchema,
  ListAccountsResponseSchema,
} from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { AuditService } from "../../src/gen/tollgate/admin/v1/audit_pb.js";
import { CatalogueService, Tier } from "../../src/gen/tollgate/admin/v1/catalogue_pb.js";
import { CreditService } from "../../src/gen/tollgate/admin/v1/credits_pb.js";
import { KeyService } from "../../src/gen/tollgate/admin/v1/keys_pb.js";
import { PlanService } from "../../src/gen/tollgate/admin/v1/plans_pb.js";
import { ExportFormat, UsageGrouping, UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";
import { describeStores } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";
import { insertUsage } from "./usage-rows.js";

const run = promisify(execFile);
const BUF = join(import.meta.dirname, "../../node_modules/.bin/buf");

/** Expects `promise` to fail with `code` and a message matching `message`. */
async function fails(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "call should fail").toBeInstanceOf(ConnectError);
  expect(Code[(error as ConnectError).code]).toBe(Code[code]);
  if (message) expect((error as ConnectError).rawMessage).toMatch(message);
}

describeStores("admin API", (target) => {
  let h: AdminHarness;
  beforeAll(async () => {
    h = await startAdmin(target(), { pollMs: 100 });
  });
  afterAll(() => h?.close());

  it("runs accounts, keys, credits and audit end to end over Connect", async () => {
    const accounts = h.client(AccountService);
    const keys = h.client(KeyService);
    const credits = h.client(CreditService);
    const { account } = await accounts.createAccount({ name: "Acme", planId: "pro" });
    const accountId = account!.id;
    const created = await keys.createKey({
      accountId,
      name: "prod",
      labels: { env: "prod" },
      allowedModels: ["gpt-5.5"],
      requestsPerMinute: 30,
      expiresIn: durationFromMs(86_400_000),
    });
    expect(created.secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
    expect(created.key).toMatchObject({
      accountId,
      name: "prod",
      displayPrefix: created.secret.slice(0, 7),
      labels: { env: "prod" },
      allowedModels: ["gpt-5.5"],
      requestsPerMinute: 30,
    });
    const keyId = created.key!.id;

    const updated = await keys.updateKey({ keyId, tokensPerMinute: 5000n, allowedModels: { models: [] } });
    expect(updated.key).toMatchObject({ requestsPerMinute: 30, tokensPerMinute: 5000n, allowedModels: [] });
    const rotated = await keys.rotateKey({ keyId, grace: durationFromMs(3_600_000) });
    expect(rotated.key!.id).toBe(keyId);
    expect(rotated.secret).not.toBe(created.secret);
    expect(rotated.key!.previousSecretExpiresAt).toBeDefined();
    const revoked = await keys.revokeKey({ keyId });
    expect(revoked.key!.revokedAt).toBeDefined();
    // Revocation went through the control plane's key path: the cache answers "revoked" at once.
    const listed = await keys.listKeys({ accountId });
    expect(listed.keys.map((k) => k.id)).toEqual([keyId]);
    expect(JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).not.toContain(rotated.secret);

    const first = await credits.topUp({ accountId, amountNanoUsd: 10_000_000_000n, idempotencyKey: "order-1" });
    expect(first).toMatchObject({
      creditNanoUsd: 10_000_000_000n,
      platformFeeNanoUsd: 2_500_000_000n,
      chargedNanoUsd: 12_500_000_000n,
      platformFeeBps: 2500,
      balanceNanoUsd: 10_000_000_000n,
      replayed: false,
    });
    const again = await credits.topUp({ accountId, amountNanoUsd: 10_000_000_000n, idempotencyKey: "order-1" });
    expect(again).toMatchObject({ topUpId: first.topUpId, replayed: true, balanceNanoUsd: 10_000_000_000n });
    await fails(
      credits.topUp({ accountId, amountNanoUsd: 5n, idempotencyKey: "order-1" }),
      Code.FailedPrecondition,
      /idempotency_key: already used/,
    );
    expect((await credits.getBalance({ accountId })).balanceNanoUsd).toBe(10_000_000_000n);
    const ledger = await credits.listLedgerEntries({ accountId });
    expect(ledger.entries.map((e) => [e.kind, e.amountNanoUsd, e.reference])).toEqual([
      ["platform_fee", 2_500_000_000n, first.topUpId],
      ["top_up", 10_000_000_000n, first.topUpId],
    ]);

    const audit = await h.client(AuditService).listAuditEvents({});
    const methods = audit.events.map((e) => e.method.split("/")[1]);
    expect(methods).toEqual(
      expect.arrayContaining(["CreateAccount", "CreateKey", "UpdateKey", "RotateKey", "RevokeKey", "TopUp"]),
    );
    expect(methods.filter((m) => m === "TopUp")).toHaveLength(1);
    expect(audit.events.find((e) => e.method.endsWith("RevokeKey"))!.targets).toEqual({
      key_id: keyId,
      account_id: accountId,
    });
    const text = JSON.stringify(audit, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
    for (const secret of [created.secret, rotated.secret, h.operatorToken]) expect(text).not.toContain(secret);
  });

  it("changes plans and prices so admission sees them within a poll", async () => {
    const plans = h.client(PlanService);
    const catalogue = h.client(CatalogueService);
    await plans.createPlan({
      plan: { id: "team", name: "Team", requestsPerMinute: 100, tokensPerMinute: 100_000n, tiers: [Tier.BASIC] },
    });
    await plans.updatePlan({ planId: "team", requestsPerMinute: 200 });
    expect(h.t.plane.snapshot().plans.get("team")?.requestsPerMinute).toBe(200);
    const before = (await catalogue.getModel({ modelId: "gpt-5.5" })).model!;
    const updated = await catalogue.updateModel({
      modelId: "gpt-5.5",
      prices: {
        inputPicoUsdPerToken: 7_000_000n,
        cachedInputPicoUsdPerToken: 700_000n,
        outputPicoUsdPerToken: 21_000_000n,
      },
    });
    expect(updated.model!.updatedAt!.seconds * 1000n + BigInt(updated.model!.updatedAt!.nanos / 1e6)).toBeGreaterThan(
      before.updatedAt!.seconds * 1000n + BigInt(before.updatedAt!.nanos / 1e6) - 1n,
    );
    expect(h.t.plane.snapshot().models.get("gpt-5.5")?.prices.input).toBe(7_000_000n);
    await catalogue.createModel({
      model: {
        id: "tiny-1",
        name: "Tiny",
        provider: "openai",
        upstreamModel: "tiny",
        tier: Tier.BASIC,
        prices: { inputPicoUsdPerToken: 1n, cachedInputPicoUsdPerToken: 1n, outputPicoUsdPerToken: 2n },
        contextWindow: 1000,
        maxOutputTokens: 100,
      },
    });
    await catalogue.retireModel({ modelId: "tiny-1" });
    expect(h.t.plane.snapshot().models.get("tiny-1")?.retired).toBe(true);
    expect((await catalogue.listModels({})).models.map((m) => m.id)).not.toContain("tiny-1");
    await plans.retirePlan({ planId: "team" });
    await fails(
      h.client(AccountService).createAccount({ name: "X", planId: "team" }),
      Code.InvalidArgument,
      /^plan_id: plan "team" does not exist or is retired$/,
    );
    await fails(plans.retirePlan({ planId: "pro" }), Code.FailedPrecondition, /still has \d+ account/);
  });

  it("validates every field with an error that names it", async () => {
    const accounts = h.client(AccountService);
    const keys = h.client(KeyService);
    const { account } = await accounts.createAccount({ name: "Val", planId: "basic" });
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => accounts.createAccount({ name: "", planId: "pro" }), /^name: must not be empty$/],
      [() => accounts.createAccount({ name: "x", planId: "" }), /^plan_id: must not be empty$/],
      [
        () => keys.createKey({ accountId: account!.id, allowedModels: ["gpt-9"] }),
        /^allowed_models\[0\]: model "gpt-9" is not in the catalogue$/,
      ],
      [() => keys.createKey({ accountId: account!.id, labels: { "bad key": "v" } }), /^labels\.bad key: label names/],
      [
        () => keys.createKey({ accountId: account!.id, requestsPerMinute: -1 }),
        /^requests_per_minute: must not be negative$/,
      ],
      [
        () => h.client(CreditService).topUp({ accountId: account!.id, amountNanoUsd: 0n, idempotencyKey: "k" }),
        /^amount_nano_usd: must be greater than zero$/,
      ],
      [
        () => h.client(CreditService).topUp({ accountId: account!.id, amountNanoUsd: 1n, idempotencyKey: "" }),
        /^idempotency_key: must not be empty$/,
      ],
      [
        () =>
          h
            .client(PlanService)
            .createPlan({ plan: { id: "p2", name: "P", requestsPerMinute: 1, tokensPerMinute: 1n, tiers: [] } }),
        /^plan\.tiers: must name at least one tier$/,
      ],
      [
        () => h.client(CatalogueService).updateModel({ modelId: "gpt-5.5", prices: { inputPicoUsdPerToken: -1n } }),
        /^prices\.input_pico_usd_per_token: must not be negative$/,
      ],
      [
        () => h.client(UsageService).listUsage({ filter: { accountId: account!.id }, pageSize: 5000 }),
        /^page_size: must be between 0 and 1000$/,
      ],
      [
        () =>
          h
            .client(UsageService)
            .summarizeUsage({ filter: { accountId: account!.id }, groupBy: [UsageGrouping.UNSPECIFIED] }),
        /^group_by\[0\]: must be/,
      ],
      [() => accounts.listAccounts({ pageToken: "not a token!" }), /^page_token: /],
    ];
    for (const [call, message] of cases) await fails(call(), Code.InvalidArgument, message);
  });

  it("pages with opaque tokens and refuses tampered ones", async () => {
    const accountId = (await h.client(AccountService).createAccount({ name: "Pager", planId: "pro" })).account!.id;
    const keyId = (await h.client(KeyService).createKey({ accountId })).key!.id;
    await insertUsage(h.t.plane.stores.db.knex, { accountId, keyId, rows: 25, start: Date.UTC(2026, 0, 1) });
    const usage = h.client(UsageService);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await usage.listUsage({ filter: { accountId }, pageSize: 10, pageToken });
      seen.push(...page.records.map((r) => r.decisionId));
      pageToken = page.nextPageToken;
      if (pageToken) {
        const tampered = Buffer.from(pageToken, "base64url")
          .toString()
          .replace(/"c":\[\d/, '"c":["x"');
        await fails(
          usage.listUsage({
            filter: { accountId },
            pageSize: 10,
            pageToken: Buffer.from(tampered).toString("base64url"),
          }),
          Code.InvalidArgument,
          /^page_token:/,
        );
        await fails(
          usage.listUsage({ filter: { accountId, model: "other" }, pageSize: 10, pageToken }),
          Code.InvalidArgument,
          /^page_token:/,
        );
      }
    } while (pageToken);
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    const summary = await usage.summarizeUsage({ filter: { accountId }, groupBy: [UsageGrouping.DAY] });
    expect(summary.aggregates.reduce((n, a) => n + a.requests, 0n)).toBe(25n);
    const byModel = await usage.summarizeUsage({ filter: { accountId }, groupBy: [UsageGrouping.MODEL] });
    expect(byModel.aggregates.map((a) => a.model)).toEqual(["gpt-5.5"]);
    let csv = "";
    for await (const { chunk } of usage.exportUsage({ filter: { accountId }, format: ExportFormat.CSV }))
      csv += Buffer.from(chunk).toString();
    expect(csv.trimEnd().split("\n")).toHaveLength(26);
    const http = await fetch(`${h.url}/export/usage.jsonl?account_id=${accountId}`, {
      headers: { authorization: `Bearer ${h.operatorToken}` },
    });
    expect(http.status).toBe(200);
    expect(
      (await http.text())
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l).account_id),
    ).toEqual(Array(25).fill(accountId));
  });

  it("speaks gRPC (grpc-js, connect-node), gRPC-Web and Connect JSON on one port", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${h.operatorToken}`);
    const client = new grpc.Client(`127.0.0.1:${h.t.plane.admin!.port}`, grpc.credentials.createInsecure());
    const viaGrpcJs = await new Promise<ReturnType<typeof fromBinary<typeof ListAccountsResponseSchema>>>(
      (resolve, reject) =>
        client.makeUnaryRequest(
          "/tollgate.admin.v1.AccountService/ListAccounts",
          (m: ReturnType<typeof create<typeof ListAccountsRequestSchema>>) =>
            Buffer.from(toBinary(ListAccountsRequestSchema, m)),
          (b: Buffer) => fromBinary(ListAccountsResponseSchema, b),
          create(ListAccountsRequestSchema, {}),
          metadata,
          (error, value) => (error ? reject(error) : resolve(value!)),
        ),
    );
    client.close();
    expect(viaGrpcJs.accounts.length).toBeGreaterThan(0);
    const denied = await new Promise<grpc.ServiceError>((resolve) =>
      new grpc.Client(`127.0.0.1:${h.t.plane.admin!.port}`, grpc.credentials.createInsecure()).makeUnaryRequest(
        "/tollgate.admin.v1.AccountService/ListAccounts",
        () => Buffer.alloc(0),
        (b: Buffer) => b,
        {},
        new grpc.Metadata(),
        (e) => resolve(e!),
      ),
    );
    expect(denied.code).toBe(grpc.status.UNAUTHENTICATED);

    const auth = [
      (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) =>
        (req: Parameters<ReturnType<import("@connectrpc/connect").Interceptor>>[0]) => (
          req.header.set("authorization", `Bearer ${h.operatorToken}`), next(req)
        ),
    ];
    const viaGrpc = await createClient(
      AccountService,
      createGrpcTransport({ baseUrl: h.url, interceptors: auth }),
    ).listAccounts({});
    const viaGrpcWeb = await createClient(
      AccountService,
      createGrpcWebTransport({ baseUrl: h.url, httpVersion: "1.1", interceptors: auth }),
    ).listAccounts({});
    expect(viaGrpc.accounts.map((a) => a.id)).toEqual(viaGrpcJs.accounts.map((a) => a.id));
    expect(viaGrpcWeb.accounts.map((a) => a.id)).toEqual(viaGrpcJs.accounts.map((a) => a.id));

    const curl = await fetch(`${h.url}/tollgate.admin.v1.AccountService/CreateAccount`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${h.operatorToken}` },
      body: JSON.stringify({ name: " ", planId: "pro" }),
    });
    expect(curl.status).toBe(400);
    expect(await curl.json()).toEqual({ code: "invalid_argument", message: "name: must not be empty" });
    const ok = await fetch(`${h.url}/tollgate.admin.v1.CreditService/GetBalance`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${h.operatorToken}` },
      body: JSON.stringify({ accountId: viaGrpc.accounts[0]!.id }),
    });
    expect(await ok.json()).toMatchObject({ accountId: viaGrpc.accounts[0]!.id });
    const anonymous = await fetch(`${h.url}/tollgate.admin.v1.AccountService/ListAccounts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(anonymous.status).toBe(401);
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${h.url}/readyz`)).json()).toEqual({ status: "ready" });
  });

  it("lists and calls services through reflection with buf curl (no proto files), with an admin token", async () => {
    const base = `http://127.0.0.1:${h.t.plane.admin!.port}`;
    // Reflection needs a token like every call (its stream reads bodies); --reflect-header '*' sends -H's with it too.
    const flags = [
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-H",
      `Authorization: Bearer ${h.operatorToken}`,
      "--reflect-header",
      "*",
    ];
    const anonymous = await run(BUF, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--list-services",
      base,
    ]).then(
      () => "listed",
      (e: { stderr?: string }) => e.stderr ?? String(e),
    );
    expect(anonymous).toMatch(/not authenticated|unauthenticated/i);
    const services = await run(BUF, ["curl", ...flags, "--list-services", base]);
    expect(services.stdout.split("\n")).toEqual(
      expect.arrayContaining([
        "tollgate.admin.v1.AccountService",
        "tollgate.admin.v1.UsageService",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );
    const methods = await run(BUF, ["curl", ...flags, "--list-methods", base]);
    expect(methods.stdout).toContain("tollgate.admin.v1.KeyService/RotateKey");
    const call = await run(BUF, [
      "curl",
      ...flags,
      "-d",
      '{"page_size": 2}',
      `${base}/tollgate.admin.v1.AccountService/ListAccounts`,
    ]);
    const body = JSON.parse(call.stdout);
    expect(body.accounts).toHaveLength(2);
    expect(body.nextPageToken).toMatch(/^[A-Za-z0-9_-]+$/);
    // v1alpha, which grpcurl asks first.
    const alpha = await run(BUF, ["curl", ...flags, "--reflect-protocol", "grpc-v1alpha", "--list-services", base]);
    expect(alpha.stdout).toContain("tollgate.admin.v1.PlanService");
  }, 60_000);
});
