import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../src/gen/tollgate/admin/v1/accounts_pb.js";
import { ConsoleSessionService } from "../../src/gen/tollgate/admin/v1/console_pb.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "../admin/harness.js";
import { refused } from "./admin-support.js";

/**
 * Every console sign-in writes a session row and an audit row (and sweeps ended sessions). An account token could
 * sign in without limit and flood both tables (and the operators' audit log); sign-in takes from the token's write
 * bucket like every other change an account token makes.
 */
describe("console sign-ins are rate limited per account token", () => {
  let h: AdminHarness;
  const clock = { now: Date.now() };
  beforeAll(async () => {
    h = await startAdmin(sqliteTarget(), {
      env: { TOLLGATE_ADMIN_ACCOUNT_WRITES_PER_SECOND: "1", TOLLGATE_ADMIN_ACCOUNT_WRITE_BURST: "5" },
      clock: () => clock.now,
    });
  });
  afterAll(() => h?.close());

  it("refuses an account token's sign-ins past its burst with ResourceExhausted, writing no session", async () => {
    const accountId = (await h.client(AccountService).createAccount({ name: "Signer", planId: "pro" })).account!.id;
    const sessions = h.client(ConsoleSessionService, await h.accountToken(accountId));
    for (let i = 0; i < 5; i++) await sessions.createSession({});
    await refused(sessions.createSession({}), Code.ResourceExhausted, /too many changes from this admin token/);
    const knex = h.t.plane.stores.db.knex;
    expect(Number((await knex("console_sessions").count({ n: "*" }).first())?.n)).toBe(5);
    clock.now += 1000;
    await sessions.createSession({});
    // Operators are not limited.
    const operator = h.client(ConsoleSessionService);
    for (let i = 0; i < 10; i++) await operator.createSession({});
  });
});
