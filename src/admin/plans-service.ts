import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ListPlansResponseSchema, PlanService } from "../gen/tollgate/admin/v1/plans_pb.js";
import type { Tier } from "../gen/tollgate/admin/v1/catalogue_pb.js";
import { caller, requireOperator } from "./access.js";
import { audit, type AdminDeps } from "./admin-deps.js";
import { nextCatalogueVersion, planLimits } from "./catalogue-service.js";
import { id, invalid, positive, text } from "./validate.js";
import { notFound, planMessage, tierFromProto } from "./views.js";

const M = "tollgate.admin.v1.PlanService/";

function tiers(values: readonly Tier[], field: string): string {
  if (values.length === 0) throw invalid(field, "must name at least one tier");
  return JSON.stringify([...new Set(values.map((t, i) => tierFromProto(t, `${field}[${i}]`)))]);
}

/** PlanService (operators): plans are limits and tiers; changes reach admission within a second. */
export function planService(deps: AdminDeps): ServiceImpl<typeof PlanService> {
  const { knex } = deps.stores.db;
  const get = async (planId: string) => {
    const row = await knex("plans").where({ id: planId }).first();
    if (!row) throw notFound(`plan "${planId}"`);
    return row;
  };
  return {
    async createPlan(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const p = req.plan;
      if (!p) throw invalid("plan", "is required");
      const planId = id(p.id, "plan.id");
      const name = text(p.name, "plan.name");
      const limits = planLimits(p.requestsPerMinute, p.tokensPerMinute, "plan.");
      const tierJson = tiers(p.tiers, "plan.tiers");
      if (await knex("plans").where({ id: planId }).first("id")) throw new ConnectError(`plan "${planId}" already exists`, Code.AlreadyExists);
      const now = await nextCatalogueVersion(knex, deps.clock());
      await knex("plans").insert({ id: planId, name, requests_per_minute: limits.rpm, tokens_per_minute: limits.tpm, tiers: tierJson, retired: false, created_at: now, updated_at: now });
      await deps.reloadCatalogue();
      await audit(deps, who, M + "CreatePlan", { plan_id: planId });
      return { plan: planMessage(await get(planId)) };
    },
    async getPlan(req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      return { plan: planMessage(await get(id(req.planId, "plan_id"))) };
    },
    async listPlans(req, ctx) {
      requireOperator(await caller(deps.authenticate, ctx));
      let q = knex("plans").orderBy("id");
      if (!req.includeRetired) q = q.where({ retired: false });
      return create(ListPlansResponseSchema, { plans: (await q).map(planMessage) });
    },
    async updatePlan(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const planId = id(req.planId, "plan_id");
      const changes: Record<string, unknown> = {};
      if (req.name !== undefined) changes.name = text(req.name, "name");
      if (req.requestsPerMinute !== undefined) changes.requests_per_minute = positive(req.requestsPerMinute, "requests_per_minute", 10_000_000);
      if (req.tokensPerMinute !== undefined) changes.tokens_per_minute = positive(req.tokensPerMinute, "tokens_per_minute", 1_000_000_000_000n);
      if (req.tiers.length > 0) changes.tiers = tiers(req.tiers, "tiers");
      if (Object.keys(changes).length === 0) throw invalid("plan_id", "nothing to update");
      changes.updated_at = await nextCatalogueVersion(knex, deps.clock());
      if ((await knex("plans").where({ id: planId }).update(changes)) === 0) throw notFound(`plan "${planId}"`);
      await deps.reloadCatalogue();
      await audit(deps, who, M + "UpdatePlan", { plan_id: planId });
      return { plan: planMessage(await get(planId)) };
    },
    async retirePlan(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      requireOperator(who);
      const planId = id(req.planId, "plan_id");
      // Admission drops retired plans from its snapshot, so a plan still in use would lock its accounts out.
      const inUse = await knex("accounts").where({ plan_id: planId }).count({ n: "*" }).first();
      if (Number(inUse?.n ?? 0) > 0) throw new ConnectError(`plan "${planId}" still has ${Number(inUse!.n)} account(s); move them first`, Code.FailedPrecondition);
      const updated = await knex("plans").where({ id: planId }).update({ retired: true, updated_at: await nextCatalogueVersion(knex, deps.clock()) });
      if (updated === 0) throw notFound(`plan "${planId}"`);
      await deps.reloadCatalogue();
      await audit(deps, who, M + "RetirePlan", { plan_id: planId });
      return { plan: planMessage(await get(planId)) };
    },
  };
}
