import type { Knex } from "knex";
import { int } from "./database.js";

/** One UTC day in milliseconds: usage_log's partitions on PostgreSQL are days of `time`. */
export const PARTITION_MS = 86_400_000;

/** Days of partitions kept ready ahead of the current day, so a meter never writes into the default partition. */
export const PARTITION_DAYS_AHEAD = 7;

/** The default partition: rows whose day has no partition (late replays, clocks far ahead). */
export const DEFAULT_PARTITION = "usage_log_default";

/** How long retention and partition creation wait for usage_log's locks before giving up until the next round. */
const LOCK_TIMEOUT = "2s";

/** One partition of usage_log and its range of `time` (`from` undefined: MINVALUE; both undefined: the default). */
export interface UsagePartition {
  name: string;
  from?: number;
  to?: number;
  isDefault: boolean;
}

/** The start of the UTC day holding `ms`. */
export function dayStart(ms: number): number {
  return Math.floor(ms / PARTITION_MS) * PARTITION_MS;
}

/** The partition name for the UTC day starting at `start`: usage_log_pYYYYMMDD. */
export function partitionName(start: number): string {
  return `usage_log_p${new Date(start).toISOString().slice(0, 10).replaceAll("-", "")}`;
}

/** Reads a partition bound value printed by pg_get_expr: `'1764547200000'`, `1764547200000` or `MINVALUE`. */
function boundValue(text: string): number | undefined {
  const value = text.trim().replace(/^'(.*)'$/, "$1");
  return /^-?\d+$/.test(value) ? Number(value) : undefined;
}

/** Lists usage_log's partitions (in the schema on the search path) with their ranges. */
export async function listUsagePartitions(k: Knex | Knex.Transaction): Promise<UsagePartition[]> {
  const result = await k.raw(
    `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
     from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'usage_log'::regclass order by c.relname`,
  );
  return (result.rows as Array<{ name: string; bound: string }>).map(({ name, bound }) => {
    if (bound === "DEFAULT") return { name, isDefault: true };
    const range = /FROM \((.+)\) TO \((.+)\)/.exec(bound);
    if (!range) throw new Error(`usage_log partition ${name} has an unexpected bound: ${bound}`);
    return { name, from: boundValue(range[1]!), to: boundValue(range[2]!), isDefault: false };
  });
}

/**
 * Creates the day partition [start, start + 1 day) of usage_log. Rows of that day already in the default partition
 * move into it in the same transaction (PostgreSQL refuses to attach a range the default still holds rows of).
 * The new table is attached rather than created as a partition: ATTACH takes a lock on usage_log that does not stop
 * the meter's inserts.
 */
async function createDayPartition(knex: Knex, start: number): Promise<boolean> {
  const name = partitionName(start);
  return knex.transaction(async (trx) => {
    await trx.raw(`set local lock_timeout = '${LOCK_TIMEOUT}'`);
    // Meters sharing the database make the same days: one at a time, and a day made meanwhile is left alone.
    await trx.raw("select pg_advisory_xact_lock(hashtext('tollgate.usage_log.partitions'))");
    if ((await trx.raw("select to_regclass(?) as t", [name])).rows[0].t !== null) return false;
    await trx.raw("create table ?? (like usage_log including defaults including constraints)", [name]);
    await trx.raw(
      `with moved as (delete from ?? where time >= ? and time < ? returning *) insert into ?? select * from moved`,
      [DEFAULT_PARTITION, start, start + PARTITION_MS, name],
    );
    await trx.raw(`alter table usage_log attach partition ?? for values from (${start}) to (${start + PARTITION_MS})`, [
      name,
    ]);
    return true;
  });
}

/**
 * Makes sure usage_log has a partition for every day from the one holding `now` to PARTITION_DAYS_AHEAD days after
 * it (PostgreSQL only). Returns how many it created. A day already covered by another partition is left alone.
 */
export async function prepareUsagePartitions(knex: Knex, now: number): Promise<number> {
  const existing = await listUsagePartitions(knex);
  const covered = (start: number) =>
    existing.some(
      (p) => !p.isDefault && (p.from === undefined || p.from <= start) && p.to !== undefined && start < p.to,
    );
  let created = 0;
  for (let day = 0; day <= PARTITION_DAYS_AHEAD; day++) {
    const start = dayStart(now) + day * PARTITION_MS;
    if (covered(start)) continue;
    if (await createDayPartition(knex, start)) created++;
  }
  return created;
}

/**
 * Retention on PostgreSQL: drops every partition whose whole range ends at or before `before` (no row is deleted
 * one by one), and deletes the expired rows of the partitions that are not whole days (the default partition, and the
 * pre-partitioning table until its last row expires). Returns the partitions dropped, the rows they held (the
 * planner's estimate: counting them would read them) and the rows deleted.
 */
export async function dropExpiredUsage(
  knex: Knex,
  before: number,
): Promise<{ dropped: number; droppedRows: number; deleted: number }> {
  let dropped = 0;
  let droppedRows = 0;
  let deleted = 0;
  for (const p of await listUsagePartitions(knex)) {
    if (!p.isDefault && p.to !== undefined && p.to <= before) {
      await knex.transaction(async (trx) => {
        await trx.raw(`set local lock_timeout = '${LOCK_TIMEOUT}'`);
        const estimate = await trx.raw(
          "select greatest(reltuples, 0)::bigint as n from pg_class where oid = ?::regclass",
          [p.name],
        );
        droppedRows += int(estimate.rows[0]?.n ?? 0);
        await trx.raw("drop table if exists ??", [p.name]);
      });
      dropped++;
    } else if (p.isDefault || p.from === undefined) {
      deleted += int(await knex(p.name).where("time", "<", before).delete());
    }
  }
  return { dropped, droppedRows, deleted };
}
