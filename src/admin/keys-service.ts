import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type KeyService,
  type LimitWindow,
  LimitWindowSchema,
  ListKeysResponseSchema,
} from "../gen/tollgate/admin/v1/keys_pb.js";
import type { LimitFigures } from "../domain/verdict.js";
import { caller } from "./access.js";
import type { AdminDeps } from "./admin-deps.js";
import { budgetStatusMessage, keyMessage } from "./views.js";

/** A limiter window as the API shows it (undefined when the key has no such limit). */
function limitWindow(f: LimitFigures | undefined): LimitWindow | undefined {
  return f
    ? create(LimitWindowSchema, {
        limit: BigInt(f.limit),
        remaining: BigInt(f.remaining),
        resetSeconds: f.resetSeconds,
      })
    : undefined;
}

/** KeyService: protobuf ↔ the key use cases (create with the secret once, list, narrow, rotate, revoke). */
export function keyService(deps: AdminDeps): ServiceImpl<typeof KeyService> {
  const ops = deps.ops.keys;
  return {
    async createKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const issued = await ops.create(who, {
        accountId: req.accountId,
        name: req.name,
        labels: req.labels,
        allowedModels: req.allowedModels,
        requestsPerMinute: req.requestsPerMinute,
        tokensPerMinute: req.tokensPerMinute,
        requestsPerDay: req.requestsPerDay,
        tokensPerDay: req.tokensPerDay,
        maxConcurrency: req.maxConcurrency,
        budgetNanos: req.budgetNanoUsd === 0n ? undefined : req.budgetNanoUsd,
        budgetPeriod: req.budgetPeriod === "" ? undefined : req.budgetPeriod,
        expiresInMs: req.expiresIn ? durationMs(req.expiresIn) : undefined,
      });
      return { key: keyMessage(issued.key), secret: issued.secret };
    },
    async getKey(req, ctx) {
      return { key: keyMessage(await ops.get(await caller(deps.authenticate, ctx), req.keyId)) };
    },
    async listKeys(req, ctx) {
      const { items, nextPageToken } = await ops.list(await caller(deps.authenticate, ctx), req);
      return create(ListKeysResponseSchema, { keys: items.map(keyMessage), nextPageToken });
    },
    async updateKey(req, ctx) {
      const who = await caller(deps.authenticate, ctx);
      const key = await ops.update(who, {
        keyId: req.keyId,
        name: req.name,
        labels: req.labels?.labels,
        allowedModels: req.allowedModels?.models,
        requestsPerMinute: req.requestsPerMinute,
        tokensPerMinute: req.tokensPerMinute,
        requestsPerDay: req.requestsPerDay,
        tokensPerDay: req.tokensPerDay,
        maxConcurrency: req.maxConcurrency,
        budgetNanos: req.budgetNanoUsd,
        budgetPeriod: req.budgetPeriod,
      });
      return { key: keyMessage(key) };
    },
    async rotateKey(req, ctx) {
      const issued = await ops.rotate(await caller(deps.authenticate, ctx), {
        keyId: req.keyId,
        graceMs: req.grace ? durationMs(req.grace) : 0,
      });
      return { key: keyMessage(issued.key), secret: issued.secret };
    },
    async getKeySpend(req, ctx) {
      const budgets = await deps.ops.budgets.keySpend(await caller(deps.authenticate, ctx), req.keyId);
      const of = (scope: "key" | "account") => {
        const b = budgets.find((x) => x.scope === scope);
        return b ? budgetStatusMessage(b) : undefined;
      };
      return { keyBudget: of("key"), accountBudget: of("account") };
    },
    async getKeyLimits(req, ctx) {
      const view = await deps.ops.keyLimits.get(await caller(deps.authenticate, ctx), req.keyId);
      const { state, inFlight } = view.windows;
      return {
        live: view.live,
        requestsPerMinute: limitWindow(state.requests),
        tokensPerMinute: limitWindow(state.tokens),
        requestsPerDay: limitWindow(state.requestsDay),
        tokensPerDay: limitWindow(state.tokensDay),
        maxConcurrency: view.limits.maxConcurrency,
        inFlight,
      };
    },
    async revokeKey(req, ctx) {
      return { key: keyMessage(await ops.revoke(await caller(deps.authenticate, ctx), req.keyId)) };
    },
  };
}
