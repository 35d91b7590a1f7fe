import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/config/config.js";
import { startConsoleStack, type ConsoleStack } from "./console-stack.js";

/** Debian's chromium (apt-get install chromium), or TOLLGATE_CHROMIUM. */
function findChromium(): string | undefined {
  for (const candidate of [process.env.TOLLGATE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"])
    if (candidate && existsSync(candidate)) return candidate;
  return undefined;
}

const CHROMIUM = findChromium();
/** expect.poll's default (1 s) is too short for a page on a machine shared by every suite. */
const SLOW = { timeout: 20_000, interval: 100 };
/** Where the tests save a screenshot of each page (git-ignored). */
const SHOTS = join(PACKAGE_ROOT, "test-results/console");
/** An account and key name that would run script if the console ever rendered names as HTML. */
const XSS = `<img src=x onerror="window.__xss='img'"><script>window.__xss='script'</script>`;

// Without chromium the suite skips with one line, except under CI, where it runs and fails on the missing browser.
if (!CHROMIUM && process.env.CI !== "true")
  console.log("console browser tests skipped: no chromium (apt-get install chromium, or set TOLLGATE_CHROMIUM)");
const suite = CHROMIUM || process.env.CI === "true" ? describe : describe.skip;

suite("web console in headless Chromium", () => {
  let stack: ConsoleStack;
  let browser: Browser;
  let acme: { accountId: string; token: string };
  let other: { accountId: string; token: string };
  let otherKeyId: string;
  const pageProblems: string[] = [];

  beforeAll(async () => {
    if (!CHROMIUM) throw new Error("chromium is not installed (apt-get install -y chromium): CI must run these tests");
    mkdirSync(SHOTS, { recursive: true });
    stack = await startConsoleStack();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    acme = await stack.account("Acme");
    other = await stack.account(XSS);
    otherKeyId = (await stack.plane.stores.keys.create({ accountId: other.accountId, name: XSS })).key.id;
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  /** A fresh browser context (its own cookies) whose page reports script errors, CSP violations and dialogs. */
  async function open(): Promise<{ context: BrowserContext; page: Page }> {
    pageProblems.length = 0;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.adminUrl });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageProblems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 40[134] /.test(m.text())) pageProblems.push(`console: ${m.text()}`);
    });
    page.on("dialog", (d) => {
      pageProblems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    return { context, page };
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${stack.adminUrl}/console`);
    await page.getByLabel("Admin token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
  }

  /** Controls on the page without an accessible name (label, aria-label or text): there must be none. */
  async function unlabelled(page: Page): Promise<string[]> {
    return page.evaluate(`[...document.querySelectorAll("input, select, textarea, button, a[href]")]
      .filter((e) => !((e.labels && e.labels.length) || e.getAttribute("aria-label") ||
        (/^(BUTTON|A)$/.test(e.tagName) && e.textContent.trim())))
      .map((e) => e.outerHTML)`);
  }

  async function chat(secret: string): Promise<number> {
    const res = await fetch(`${stack.baseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-5.5", messages: [{ role: "user", content: "Hello from the console test" }] }),
    });
    await res.text();
    return res.status;
  }

  /** Waits until the meter has billed `n` requests of the account. */
  async function billed(accountId: string, n: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      await stack.flushAccessLogs();
      const rows = await stack.plane.stores.db.knex("usage_log").where({ account_id: accountId }).count({ n: "*" });
      if (Number(rows[0]!.n) >= n) return;
      if (Date.now() > deadline) throw new Error(`the meter billed fewer than ${n} requests of ${accountId}`);
      await sleep(200);
    }
  }

  it("account holder: signs in, creates a key and sees its secret once, uses it, sees usage, rotates and revokes it", async () => {
    const { context, page } = await open();
    await page.goto(`${stack.adminUrl}/console`);
    await page.getByLabel("Admin token").waitFor();
    await page.screenshot({ path: join(SHOTS, "sign-in.png") });
    await signIn(page, acme.token);

    // The session is a cookie script cannot read; nothing is kept in web storage.
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "tollgate_session")!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    expect(await page.evaluate("document.cookie")).toBe("");
    expect(page.url()).not.toContain(acme.token);
    await expect.poll(() => page.getByTestId("balance").textContent(), SLOW).toBe("$10.00");
    // The account's spend cap is shown; only an operator sets it.
    expect(await page.getByTestId("account-budget").textContent()).toBe("none");
    expect(await page.getByLabel("Account budget (USD)").count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, "account-balance.png"), fullPage: true });

    // Create a key: the secret is shown once, with a working copy button.
    await page.getByRole("link", { name: "Keys" }).click();
    await page.getByLabel("Name").fill("web-app");
    await page.getByLabel("Environment").selectOption("staging");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.getByTestId("new-secret").textContent())!;
    expect(secret).toMatch(/^tg_[0-9A-Za-z]{40}$/);
    // Focus moves to the dialog after it renders: wait for it (bounded), then hold it to that.
    await page
      .waitForFunction("document.activeElement?.getAttribute('role') === 'dialog'", undefined, { timeout: 5000 })
      .catch(() => undefined);
    expect(await page.evaluate("document.activeElement.getAttribute('role')")).toBe("dialog");
    await page.getByRole("button", { name: "Copy" }).click();
    expect(await page.evaluate("navigator.clipboard.readText()")).toBe(secret);
    await page.screenshot({ path: join(SHOTS, "keys-secret-once.png"), fullPage: true });
    await page.getByRole("button", { name: "I have stored it" }).click();
    expect(await page.content()).not.toContain(secret);
    await page.reload();
    await page.getByTestId("keys-table").getByText("web-app").waitFor();
    expect(await page.content()).not.toContain(secret);
    expect(await page.evaluate("JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })")).toBe(
      "{}{}",
    );
    const row = page.locator("tr", { has: page.getByText("web-app") });
    await expect.poll(() => row.locator("td").nth(1).textContent(), SLOW).toBe("staging");

    // A request through the data plane with it, billed by the meter, shows in the usage chart and table.
    expect(await chat(secret)).toBe(200);
    await billed(acme.accountId, 1);
    await page.reload();
    // The key's rate-limit windows now, as the limiter holds them: one request of the plan's per-minute allowance used.
    const windows = await row.getByTestId("key-limits-now").textContent();
    const perMinute = /([\d,]+) of ([\d,]+) req\/min left \(resets in \d+ s\)/.exec(windows ?? "");
    expect(perMinute, windows ?? "").not.toBeNull();
    const [left, limit] = [perMinute![1]!, perMinute![2]!].map((n) => Number(n.replace(/,/g, "")));
    expect(left).toBe(limit! - 1);
    expect(windows).toMatch(/ tok\/min left/);
    expect(windows).not.toContain("Not visible");
    await page.getByRole("link", { name: "Usage" }).click();
    const table = page.getByTestId("usage-table");
    await table.getByText("web-app").waitFor();
    const usageRow = table.locator("tbody tr", { has: page.getByText("web-app") });
    expect(await usageRow.locator("td").nth(2).textContent()).toBe("1");
    expect(await usageRow.locator("td").nth(5).textContent()).toMatch(/^\$0\.0\d*[1-9]/);
    for (const chart of ["spend-chart", "tokens-chart"]) {
      await page.getByTestId(chart).locator("canvas").waitFor();
      expect(await page.getByTestId(chart).locator(".u-legend").textContent()).toContain("web-app");
    }
    await page.screenshot({ path: join(SHOTS, "usage.png"), fullPage: true });
    expect(await unlabelled(page)).toEqual([]);
    await page.getByLabel("Group by").selectOption("model");
    await table.getByText("gpt-5.5").waitFor();
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export CSV" }).click(),
    ]);
    const csv = readFileSync((await download.path())!, "utf8");
    expect(csv.trim().split("\n")).toHaveLength(2);
    expect(csv).toContain("gpt-5.5");
    expect(csv).not.toContain(other.accountId);

    // Rotate (no grace): a new secret once; the old one is refused at once, the new one works.
    await page.getByRole("link", { name: "Keys" }).click();
    await row.getByRole("button", { name: "Rotate" }).click();
    await row.getByRole("button", { name: "Confirm rotate" }).click();
    const rotated = (await page.getByTestId("new-secret").textContent())!;
    expect(rotated).toMatch(/^tg_/);
    expect(rotated).not.toBe(secret);
    await page.getByRole("button", { name: "I have stored it" }).click();
    await expect.poll(() => chat(secret), SLOW).toBe(401);
    expect(await chat(rotated)).toBe(200);

    // Per-key limits, then revoke: the key is refused by the data plane.
    await row.getByRole("button", { name: "Limits" }).click();
    await row.getByLabel("Requests/min").fill("7");
    await row.getByLabel("Requests/day").fill("100");
    await row.getByLabel("Budget (USD)").fill("5");
    await row.getByLabel("Budget period").selectOption("day");
    await row.getByRole("button", { name: "Save limits" }).click();
    await expect
      .poll(() => row.getByTestId("key-budget").textContent(), SLOW)
      .toMatch(/^\$0\.\d\d spent of \$5\.00 per day · resets /);
    await expect
      .poll(() => row.locator("td").nth(4).textContent(), SLOW)
      .toBe("7 req/min · plan tok/min · 100 req/day");
    const limited = await stack.plane.stores.db.knex("api_keys").where({ name: "web-app" }).first();
    expect([limited.requests_per_minute, limited.requests_per_day].map(Number)).toEqual([7, 100]);
    await row.getByRole("button", { name: "Revoke" }).click();
    await row.getByRole("button", { name: "Confirm revoke" }).click();
    await expect.poll(() => row.getByTestId("key-status").textContent(), SLOW).toBe("revoked");
    expect(await row.getByTestId("key-budget").textContent()).toBe("$5.00 per day");
    await expect.poll(() => chat(rotated), SLOW).toBe(401);
    await page.screenshot({ path: join(SHOTS, "keys.png"), fullPage: true });
    expect(await unlabelled(page)).toEqual([]);

    // Sign-out revokes the session: the old cookie no longer works.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Admin token").waitFor();
    const replay = await fetch(`${stack.adminUrl}/tollgate.admin.v1.KeyService/ListKeys`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        cookie: `tollgate_session=${session.value}`,
        "x-tollgate-console": "1",
      },
      body: "{}",
    });
    expect(replay.status).toBe(401);
    await context.close();
    expect(pageProblems).toEqual([]);
  }, 180_000);

  it("an account's session cannot reach another account's data, even with hand-made calls", async () => {
    const { context, page } = await open();
    // A wrong token is refused with the API's message, and no session cookie is set.
    await page.goto(`${stack.adminUrl}/console`);
    await page.getByLabel("Admin token").fill(`tga_${"x".repeat(40)}`);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent(), SLOW).toContain("admin token is unknown or revoked");
    expect((await context.cookies()).map((c) => c.name)).not.toContain("tollgate_session");
    // Keyboard only: the token field is the first stop, Enter signs in, Tab reaches the navigation.
    await page.reload();
    await page.getByLabel("Admin token").waitFor();
    await page.keyboard.press("Tab");
    await page.keyboard.type(acme.token);
    await page.keyboard.press("Enter");
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.keyboard.press("Tab"); // skip link
    await page.keyboard.press("Tab"); // Balance
    await page.keyboard.press("Tab"); // Keys
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Keys", level: 1 }).waitFor();
    expect(await unlabelled(page)).toEqual([]);
    // The operator's routes show the signed-in account's own data, never the one in the URL.
    await page.goto(`${stack.adminUrl}/console#/accounts/${other.accountId}/keys`);
    await expect.poll(() => page.getByTestId("account-name").textContent(), SLOW).toBe("Acme");
    const answers = await page.evaluate(
      async ({ otherAccount, otherKey }) => {
        const call = async (path: string, body: unknown) => {
          const res = await fetch(`/tollgate.admin.v1.${path}`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-tollgate-console": "1" },
            body: JSON.stringify(body),
          });
          return `${res.status} ${await res.text()}`;
        };
        return [
          await call("AccountService/GetAccount", { accountId: otherAccount }),
          await call("KeyService/ListKeys", { accountId: otherAccount }),
          await call("KeyService/GetKey", { keyId: otherKey }),
          await call("KeyService/RevokeKey", { keyId: otherKey }),
          await call("CreditService/GetBalance", { accountId: otherAccount }),
          await call("UsageService/ListUsage", { filter: { accountId: otherAccount } }),
          await call("AccountService/ListAccounts", {}),
          (await fetch(`/export/usage.csv?account_id=${otherAccount}`, { headers: { "x-tollgate-console": "1" } }))
            .status,
        ];
      },
      { otherAccount: other.accountId, otherKey: otherKeyId },
    );
    expect(answers.slice(0, 6).map((a) => String(a).slice(0, 3))).toEqual(["403", "403", "404", "404", "403", "403"]);
    expect(String(answers[6])).toMatch(/^200 /);
    expect(String(answers[6])).not.toContain(other.accountId);
    expect(answers[7]).toBe(403);
    for (const a of answers) expect(String(a)).not.toContain("__xss");
    const key = await stack.plane.stores.db.knex("api_keys").where({ id: otherKeyId }).first();
    expect(key.revoked_at).toBeNull();
    await context.close();
    expect(pageProblems).toEqual([]);
  }, 120_000);

  it("operator: accounts (names with HTML render as text), plans, catalogue price change, audit log", async () => {
    const { context, page } = await open();
    await signIn(page, stack.operatorToken);
    const accounts = page.getByTestId("accounts-table");
    await accounts.getByRole("cell", { name: "Acme", exact: true }).waitFor();
    // XSS: the account name is shown as the literal text, no element is made from it, no script ran.
    await expect.poll(() => accounts.getByTestId("account-name").allTextContents(), SLOW).toContain(XSS);
    expect(await page.locator("img").count()).toBe(0);
    expect(await page.evaluate("window.__xss")).toBeUndefined();
    await page.screenshot({ path: join(SHOTS, "operator-accounts.png"), fullPage: true });
    expect(await unlabelled(page)).toEqual([]);
    await page.getByLabel("Search by name or id").fill("acme");
    await expect.poll(() => accounts.locator("tbody tr").count(), SLOW).toBe(1);
    await page.getByLabel("Search by name or id").fill("");

    // The XSS account's keys page: its key name is text too.
    await page.goto(`${stack.adminUrl}/console#/accounts/${other.accountId}/keys`);
    await expect.poll(() => page.getByTestId("key-name").allTextContents(), SLOW).toEqual([XSS]);
    expect(await page.locator("img").count()).toBe(0);
    expect(await page.evaluate("window.__xss")).toBeUndefined();
    await page.screenshot({ path: join(SHOTS, "operator-account-keys.png"), fullPage: true });

    // Acme's spend cap, set by the operator on the account's balance page.
    await page.goto(`${stack.adminUrl}/console#/accounts/${acme.accountId}/overview`);
    await page.getByLabel("Account budget (USD)").fill("50");
    await page.getByRole("button", { name: "Save budget" }).click();
    await expect.poll(() => page.getByTestId("account-budget").textContent(), SLOW).toBe("$50.00 per month");
    await page.screenshot({ path: join(SHOTS, "operator-account-balance.png"), fullPage: true });

    // Top up Acme: credit plus the 25% platform fee.
    await page.getByRole("link", { name: "Accounts" }).click();
    const acmeRow = accounts.locator("tr", { has: page.getByText("Acme", { exact: true }) });
    await acmeRow.getByRole("button", { name: "Top up" }).click();
    await page.getByRole("textbox", { name: /^Credit to add/ }).fill("5");
    await page.getByRole("button", { name: "Add credit" }).click();
    await expect
      .poll(() => page.getByRole("status").textContent(), SLOW)
      .toContain("Topped up $5.00 (+ $1.25 platform fee)");

    // Change a price: $ per million tokens in, exact pico-USD per token stored.
    await page.getByRole("link", { name: "Catalogue" }).click();
    await page.getByRole("button", { name: "Edit prices of gpt-5.5" }).click();
    await page.getByLabel("Input ($ per 1M tokens)", { exact: true }).fill("2.125");
    await page.getByRole("button", { name: "Save prices" }).click();
    const priced = page.locator('tr[data-model-id="gpt-5.5"]').getByTestId("price-input");
    await expect.poll(() => priced.textContent(), SLOW).toBe("$2.125");
    const model = await stack.plane.stores.db.knex("models").where({ id: "gpt-5.5" }).first();
    expect(BigInt(model.price_input)).toBe(2_125_000n);
    await page.screenshot({ path: join(SHOTS, "operator-catalogue.png"), fullPage: true });
    expect(await unlabelled(page)).toEqual([]);

    await page.getByRole("link", { name: "Plans" }).click();
    await page.getByRole("cell", { name: /pro/ }).first().waitFor();
    const basic = page.locator("tr", { has: page.getByRole("cell", { name: /\(basic\)/ }) });
    await basic.getByRole("button", { name: "Edit" }).click();
    await page.getByLabel("Max live keys").fill("11");
    await page.getByRole("button", { name: "Save plan" }).click();
    await expect.poll(() => basic.locator("td").nth(4).textContent(), SLOW).toBe("11");
    await page.screenshot({ path: join(SHOTS, "operator-plans.png"), fullPage: true });

    await page.getByRole("link", { name: "Audit log" }).click();
    const audit = page.getByTestId("audit-table");
    await audit.getByText("CatalogueService/UpdateModel").waitFor();
    await audit.getByText("CreditService/TopUp").waitFor();
    await page.screenshot({ path: join(SHOTS, "operator-audit.png"), fullPage: true });

    // The operator's view of an account's usage (Acme's request from the first test, or none when run alone).
    await page.goto(`${stack.adminUrl}/console#/accounts/${acme.accountId}/usage`);
    await page.getByTestId("spend-chart").locator("canvas").waitFor();
    await page.screenshot({ path: join(SHOTS, "operator-account-usage.png"), fullPage: true });
    await context.close();
    expect(pageProblems).toEqual([]);
  }, 180_000);
});
