import { Code } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { UsageGrouping, UsageService } from "../../src/gen/tollgate/admin/v1/usage_pb.js";
import { MAX_USAGE_GROUPS } from "../../src/app/usage.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { refused } from "./admin-support.js";

/** The hostile review of issue 11: SummarizeUsage answered every group in one message, however many the range held. */
describe("SummarizeUsage is bounded", () => {
  let h: AdminHarness;
  let accountId: string;
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    accountId = (await h.client(AccountService).createAccount({ name: "Busy", planId: "pro" })).account!.id;
    // One daily rollup row per key on one day: MAX_USAGE_GROUPS + 1 groups when grouped by key.
    const rows = Array.from({ length: MAX_USAGE_GROUPS + 1 }, (_, i) => ({
      account_id: accountId,
      key_id: `key_${String(i).padStart(6, "0")}`,
      model: "gpt-5.5",
      day: "2026-11-20",
      requests: 1,
      prompt_tokens: 1,
      completion_tokens: 1,
      cached_tokens: 0,
      reasoning_tokens: 0,
      cost: 1,
      estimated_requests: 0,
    }));
    const knex = h.t.plane.stores.db.knex;
    for (let i = 0; i < rows.length; i += 500) await knex("usage_daily").insert(rows.slice(i, i + 500));
  }, 60_000);
  afterAll(() => h?.close());

  it(`refuses more than ${MAX_USAGE_GROUPS} groups with FailedPrecondition asking to narrow the range or grouping`, async () => {
    const usage = h.client(UsageService, await h.accountToken(accountId));
    await refused(
      usage.summarizeUsage({ groupBy: [UsageGrouping.KEY, UsageGrouping.DAY] }),
      Code.FailedPrecondition,
      /more than 10000 groups.*narrow/,
    );
  });

  it("answers a narrower request over the same rows", async () => {
    const usage = h.client(UsageService, await h.accountToken(accountId));
    const byModel = await usage.summarizeUsage({ groupBy: [UsageGrouping.MODEL] });
    expect(byModel.aggregates).toHaveLength(1);
    expect(byModel.aggregates[0]!.requests).toBe(BigInt(MAX_USAGE_GROUPS + 1));
    const oneKey = await usage.summarizeUsage({
      groupBy: [UsageGrouping.KEY],
      filter: { keyId: "key_000007", startTime: timestampFromMs(Date.parse("2026-11-19T00:00:00Z")) },
    });
    expect(oneKey.aggregates.map((a) => a.keyId)).toEqual(["key_000007"]);
  });
});
