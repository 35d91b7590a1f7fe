import { connectRedis, createRedisClient } from "../../adapters/redis/client.js";
import { NotFoundError } from "../../adapters/sql/account-store.js";
import { createRedisCreditGate } from "../../adapters/redis/credit-gate.js";
import type { Config } from "../../config/config.js";
import type { CreditReservations } from "../../domain/credits.js";
import type { BalanceChange, BalanceSource } from "../../domain/metering.js";
import { formatUsd, parseUsd, type Nanos } from "../../domain/money.js";
import type { Stores } from "../../app/stores.js";
import { configFrom, group, parse, required, UsageError, withStores } from "../cli-kit.js";

/** Parses --amount exactly (no float), naming the flag and the accepted shape when it is not an amount. */
export function amountFlag(text: string): Nanos {
  let amount: Nanos;
  try {
    amount = parseUsd(text);
  } catch {
    throw new UsageError(`--amount must be a positive amount of USD with at most 9 decimals (e.g. 25 or 0.50), not "${text}"`);
  }
  if (amount <= 0n) throw new UsageError(`--amount must be greater than zero, not "${text}"`);
  return amount;
}

/**
 * Pushes a committed balance change into the shared Redis gate, so replicas see a top-up at once instead of after
 * the cached balance expires. The in-process gate of a running server picks it up by polling SQL.
 */
export async function publishBalance(config: Config, stores: Stores, change: BalanceChange): Promise<void> {
  try {
    await withCreditGate(config, stores.ledger, async (gate) => {
      await gate?.committed([change]);
    });
  } catch (error) {
    // The top-up is committed in SQL; Redis re-reads the balance from SQL when its cached copy expires (60 s), so a
    // failed push delays the new credit, it does not lose it. Failing the command would invite a second top-up.
    process.stderr.write(`tollgate: warning: balance committed but not pushed to Redis (replicas see it within 60 s): ${(error as Error).message}\n`);
  }
}

/**
 * Runs `fn` with the shared Redis credit gate a one-shot command talks to (undefined without redis.url), on a
 * connection opened the way `serve` opens its own (createRedisClient) and closed afterwards.
 */
export async function withCreditGate<T>(config: Config, source: BalanceSource, fn: (gate: CreditReservations | undefined) => Promise<T>): Promise<T> {
  if (!config.redis.url) return fn(undefined);
  const redis = createRedisClient(config.redis.url, { commandTimeoutMs: config.redis.command_timeout_ms });
  try {
    await connectRedis(redis);
    return await fn(createRedisCreditGate({ redis, source, reservationTtlMs: config.meter.reservation_ttl_ms, prefix: `${config.redis.prefix}:` }));
  } finally {
    redis.disconnect();
  }
}

/** `tollgate credits add|balance`. */
export const credits = group("credits", {
  async add(args, out) {
    const { values } = parse(args, { account: { type: "string" }, amount: { type: "string" } });
    const accountId = required(values.account, "--account");
    const amount = amountFlag(required(values.amount, "--amount"));
    const config = configFrom(values);
    const result = await withStores(values, async (stores) => {
      const r = await stores.ledger.topUp({ accountId, amount, feeBps: config.credits.platform_fee_bps, now: Date.now() });
      await publishBalance(config, stores, r.change);
      return r;
    });
    const json = {
      account: accountId,
      top_up_id: result.topUpId,
      credit_usd: formatUsd(amount),
      platform_fee_usd: formatUsd(result.fee),
      charged_usd: formatUsd((amount + result.fee) as Nanos),
      balance_usd: formatUsd(result.change.balance),
      credit_nanos: amount.toString(),
      platform_fee_nanos: result.fee.toString(),
      balance_nanos: result.change.balance.toString(),
    };
    out.result(json, () => `added ${json.credit_usd} USD to ${accountId} (platform fee ${json.platform_fee_usd} USD; customer pays ${json.charged_usd} USD); balance ${json.balance_usd} USD`);
  },
  async balance(args, out) {
    const { values } = parse(args, { account: { type: "string" } });
    const accountId = required(values.account, "--account");
    const row = await withStores(values, async (stores) => {
      if (!(await stores.accounts.get(accountId))) throw new NotFoundError(`account "${accountId}" does not exist`);
      return stores.ledger.balance(accountId);
    });
    const json = { account: accountId, balance_usd: formatUsd(row.balance), balance_nanos: row.balance.toString() };
    out.result(json, () => `${accountId}: ${json.balance_usd} USD`);
  },
});
