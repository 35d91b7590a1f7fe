import { connectRedis, createRedisClient } from "../../adapters/redis/client.js";
import { createRedisCreditGate } from "../../adapters/redis/credit-gate.js";
import type { Config } from "../../config/config.js";
import type { CreditReservations } from "../../domain/credits.js";
import type { BalanceSource } from "../../domain/metering.js";
import { parseUsd, type Nanos } from "../../domain/money.js";
import { UsageError } from "../cli-kit.js";

/** Parses --amount exactly (no float), naming the flag and the accepted shape when it is not an amount. */
export function amountFlag(text: string): Nanos {
  let amount: Nanos;
  try {
    amount = parseUsd(text);
  } catch {
    throw new UsageError(
      `--amount must be a positive amount of USD with at most 9 decimals (e.g. 25 or 0.50), not "${text}"`,
    );
  }
  if (amount <= 0n) throw new UsageError(`--amount must be greater than zero, not "${text}"`);
  return amount;
}

/**
 * Runs `fn` with the shared Redis credit gate a one-shot command talks to (undefined without redis.url), on a
 * connection opened the way `serve` opens its own (createRedisClient) and closed afterwards.
 */
export async function withCreditGate<T>(
  config: Config,
  source: BalanceSource,
  fn: (gate: CreditReservations | undefined) => Promise<T>,
): Promise<T> {
  if (!config.redis.url) return fn(undefined);
  const redis = createRedisClient(config.redis.url, { commandTimeoutMs: config.redis.command_timeout_ms });
  try {
    await connectRedis(redis);
    return await fn(
      createRedisCreditGate({
        redis,
        source,
        reservationTtlMs: config.meter.reservation_ttl_ms,
        prefix: `${config.redis.prefix}:`,
      }),
    );
  } finally {
    redis.disconnect();
  }
}
