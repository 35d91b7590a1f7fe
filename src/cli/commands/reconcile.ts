import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { recordFromFileLine } from "../../dataplane/accesslog/log-record.js";
import { createMeter, type MeterCounts, type MeterInput } from "../../dataplane/accesslog/meter.js";
import { createLogger } from "../../logging.js";
import { configFrom, parse, UsageError, withStores, type Handler } from "../cli-kit.js";
import { withCreditGate } from "./credits.js";

const CHUNK = 500;

/**
 * `tollgate reconcile FILE`: replays Envoy's JSON file access log through the meter's own billing path (same
 * classification, same exactly-once ledger commit), so entries ALS dropped are billed and the rest are not
 * billed twice. Safe to run any number of times.
 */
export const reconcile: Handler = async (args, out) => {
  const { values, positionals } = parse(args, {}, 1);
  const file = positionals[0];
  if (!file) throw new UsageError("reconcile needs the access log FILE");
  const config = configFrom(values);
  const logger = createLogger({ level: "warn" });
  const totals: MeterCounts & { lines: number } = { lines: 0, received: 0, billed: 0, alreadyBilled: 0, skipped: 0, deadLettered: 0, spooled: 0 };
  await withStores(values, (stores) =>
    withCreditGate(config, stores.ledger, async (credits) => {
      const meter = createMeter({ ledger: stores.ledger, credits, logger, maxBatch: CHUNK, windowMs: 0 });
      const lines = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
      let chunk: MeterInput[] = [];
      const submit = async () => {
        const counts = await meter.submit(chunk);
        chunk = [];
        for (const k of ["received", "billed", "alreadyBilled", "skipped", "deadLettered"] as const) totals[k] += counts[k];
      };
      for await (const line of lines) {
        if (line.trim() === "") continue;
        totals.lines++;
        chunk.push({ source: "file", lift: () => recordFromFileLine(line), payload: () => line });
        if (chunk.length >= CHUNK) await submit();
      }
      if (chunk.length > 0) await submit();
    }),
  );
  const json = { file, lines: totals.lines, billed: totals.billed, already_billed: totals.alreadyBilled, skipped: totals.skipped, dead_lettered: totals.deadLettered };
  out.result(json, () => `${file}: ${json.lines} entries; billed ${json.billed}, already billed ${json.already_billed}, skipped ${json.skipped}, dead-lettered ${json.dead_lettered}`);
};
