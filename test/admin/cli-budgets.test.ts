import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { sqliteTarget } from "../support/services.js";
import { startAdmin, type AdminHarness } from "./harness.js";

/** `tollgate keys update --budget-usd`, `keys spend`, `accounts budget`, plan grants and the free part of a balance. */
describe("tollgate CLI: budgets and free credit", { timeout: 180_000 }, () => {
  let h: AdminHarness;
  let env: Record<string, string>;
  const cli = (...args: string[]) => runCli(args, env);
  const okJson = async (...args: string[]) => {
    const r = await cli(...args, "--json");
    expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    h = await startAdmin(sqliteTarget());
    env = { TOLLGATE_ADMIN_URL: h.url, TOLLGATE_ADMIN_TOKEN: h.operatorToken, TOLLGATE_REDIS_URL: "" };
  });
  afterAll(() => h?.close());

  it("sets budgets and grants, shows spend and free credit, and names the field of a bad value", async () => {
    const account = await okJson("accounts", "create", "--name", "Free", "--plan", "basic");
    const balance = await cli("credits", "balance", "--account", account.id);
    expect(balance.stdout).toContain("1 USD (of which 1 USD free credit from the plan, spent first)");

    const key = await okJson("keys", "create", "--account", account.id, "--name", "capped");
    const updated = await okJson("keys", "update", key.id, "--budget-usd", "5", "--budget-period", "day");
    expect(updated).toMatchObject({ budget_nano_usd: "5000000000", budget_period: "day" });
    const spend = await okJson("keys", "spend", key.id);
    expect(spend.key_budget).toMatchObject({ limit_nano_usd: "5000000000", period: "day" });

    const badPeriod = await cli("keys", "update", key.id, "--budget-period", "fortnight");
    expect(badPeriod.code).not.toBe(0);
    expect(badPeriod.stderr).toContain('budget_period: must be "day", "week", "month" or "lifetime"');
    const badAmount = await cli("keys", "update", key.id, "--budget-usd", "five");
    expect(badAmount.code).not.toBe(0);
    expect(badAmount.stderr).toContain("--budget-usd must be an amount of USD");

    const budgeted = await okJson(
      "accounts",
      "budget",
      account.id,
      "--budget-usd",
      "50",
      "--budget-period",
      "month",
      "--time-zone",
      "Europe/Paris",
    );
    expect(budgeted).toMatchObject({
      budget_nano_usd: "50000000000",
      budget_period: "month",
      time_zone: "Europe/Paris",
    });
    const badZone = await cli("accounts", "budget", account.id, "--time-zone", "Mars/Olympus");
    expect(badZone.stderr).toContain("time_zone: must be an IANA time zone");

    const plan = await okJson("plans", "update", "basic", "--grant-monthly-usd", "2", "--grant-signup-usd", "0.5");
    expect(plan).toMatchObject({ grant_monthly_nano_usd: "2000000000", grant_signup_nano_usd: "500000000" });
  });
});
