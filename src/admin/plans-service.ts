import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { invalidField } from "../domain/errors.js";
import { ListPlansResponseSchema, type PlanService } from "../gen/tollgate/admin/v1/plans_pb.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { planMessage, tierFromProto } from "./views.js";

/** PlanService: protobuf ↔ the plan use cases (operators). */
export function planService(deps: AdminDeps): ServiceImpl<typeof PlanService> {
  const ops = deps.ops.plans;
  return {
    async createPlan(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const p = req.plan;
      if (!p) throw invalidField("plan", "is required");
      const plan = await ops.create(who, {
        id: p.id,
        name: p.name,
        requestsPerMinute: p.requestsPerMinute,
        tokensPerMinute: p.tokensPerMinute,
        tiers: p.tiers.map(tierFromProto),
        maxKeys: p.maxKeys,
        expectedOutputTokens: p.expectedOutputTokens,
        requestsPerDay: p.requestsPerDay,
        tokensPerDay: p.tokensPerDay,
        maxConcurrency: p.maxConcurrency,
        grantSignupNanos: p.grantSignupNanoUsd,
        grantMonthlyNanos: p.grantMonthlyNanoUsd,
      });
      return { plan: planMessage(plan) };
    },
    async getPlan(req, ctx) {
      return { plan: planMessage(await ops.get(await caller(deps.authenticate, ctx), req.planId)) };
    },
    async listPlans(req, ctx) {
      return create(ListPlansResponseSchema, {
        plans: (await ops.list(await caller(deps.authenticate, ctx), req.includeRetired)).map(planMessage),
      });
    },
    async updatePlan(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const plan = await ops.update(who, {
        planId: req.planId,
        name: req.name,
        requestsPerMinute: req.requestsPerMinute,
        tokensPerMinute: req.tokensPerMinute,
        tiers: req.tiers.map(tierFromProto),
        maxKeys: req.maxKeys,
        expectedOutputTokens: req.expectedOutputTokens,
        requestsPerDay: req.requestsPerDay,
        tokensPerDay: req.tokensPerDay,
        maxConcurrency: req.maxConcurrency,
        grantSignupNanos: req.grantSignupNanoUsd,
        grantMonthlyNanos: req.grantMonthlyNanoUsd,
      });
      return { plan: planMessage(plan) };
    },
    async retirePlan(req, ctx) {
      return { plan: planMessage(await ops.retire(await caller(deps.authenticate, ctx), req.planId)) };
    },
  };
}
