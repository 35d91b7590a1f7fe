import { group, parse, required, withStores, type Handler } from "../cli-kit.js";
import { printTable } from "../output.js";

/** `tollgate accounts create|list`. */
export const accounts: Handler = group("accounts", {
  async create(args, out) {
    const { values } = parse(args, { name: { type: "string" }, plan: { type: "string" } });
    const name = required(values.name, "--name");
    const plan = required(values.plan, "--plan");
    const account = await withStores(values, (s) => s.accounts.create({ name, planId: plan }));
    out.result({ id: account.id, name: account.name, plan: account.planId }, () => `created account ${account.id} (${account.name}, plan ${account.planId})`);
  },
  async list(args, out) {
    const { values } = parse(args, {});
    const rows = await withStores(values, async (s) =>
      (await s.accounts.list()).map((a) => ({ id: a.id, name: a.name, plan: a.planId, suspended: a.suspended })),
    );
    out.result(rows, () => printTable(rows));
  },
});
