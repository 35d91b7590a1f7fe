import type { Principal } from "../domain/admin-store.js";
import { NotFoundError } from "../domain/errors.js";
import type { KeyWindows, PeekRequest } from "../domain/key-status.js";
import { effectiveLimits, type KeyLimit } from "../domain/keys.js";
import { canSee, type AdminContext } from "./admin-context.js";
import { id } from "./validate.js";

/**
 * Where the admin API reads a key's windows: the limiter of this process (`peek` never admits), and whether that is
 * the limiter the data plane admits against (Redis, or authz in this process) rather than an idle local one.
 */
export interface LimitWindows {
  peek(request: PeekRequest): KeyWindows | Promise<KeyWindows>;
  live: boolean;
}

/** A key's limits now: the limits in force (its own or its plan's), the windows' state, and whether it is live. */
export interface KeyLimitsView {
  live: boolean;
  limits: Record<KeyLimit, number>;
  windows: KeyWindows;
}

/** Key limit reads: what `GET /v1/key` tells a key about itself, for the key's account or an operator. */
export type KeyLimitOperations = ReturnType<typeof createKeyLimitOperations>;

/** Creates the key limit reads over the admin context and its limiter (absent: every window reads as unused). */
export function createKeyLimitOperations(ctx: AdminContext) {
  const { store, limitWindows: windows } = ctx;
  return {
    /** The key's windows; another account's key answers NotFound, as every key read does. */
    async get(who: Principal, keyId: string): Promise<KeyLimitsView> {
      const key = await store.key(id(keyId, "key_id"));
      if (!key || !canSee(who, key.accountId)) throw new NotFoundError(`key "${keyId}" does not exist`);
      const account = await store.account(key.accountId);
      const plan = account && (await store.plan(account.planId));
      if (!plan) throw new NotFoundError(`the plan of key "${keyId}" does not exist`);
      const limits = effectiveLimits(key, {
        requestsPerMinute: plan.requestsPerMinute,
        tokensPerMinute: Number(plan.tokensPerMinute),
        requestsPerDay: plan.requestsPerDay ?? 0,
        tokensPerDay: Number(plan.tokensPerDay ?? 0n),
        maxConcurrency: plan.maxConcurrency ?? 0,
      });
      if (!windows) return { live: false, limits, windows: idle(limits) };
      const state = await windows.peek({ keyId: key.id, accountId: key.accountId, now: ctx.clock(), ...limits });
      return { live: windows.live, limits, windows: state };
    },
  };
}

/** Unused windows: what a key's limits look like to a process that has no limiter to read. */
function idle(limits: Record<KeyLimit, number>): KeyWindows {
  const figures = (limit: number) => ({ limit, remaining: limit, resetSeconds: 0 });
  return {
    state: {
      requests: figures(limits.requestsPerMinute),
      tokens: figures(limits.tokensPerMinute),
      ...(limits.requestsPerDay > 0 ? { requestsDay: figures(limits.requestsPerDay) } : {}),
      ...(limits.tokensPerDay > 0 ? { tokensDay: figures(limits.tokensPerDay) } : {}),
    },
    inFlight: 0,
  };
}
