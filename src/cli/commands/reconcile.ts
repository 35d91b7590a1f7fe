import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { recordFromFileLine } from "../../dataplane/accesslog/log-record.js";
import { createMeter, zeroCounts, type MeterCounts, type MeterInput } from "../../dataplane/accesslog/meter.js";
import { createDecisionVerifier } from "../../dataplane/signing/decision-signature.js";
import { resolveSigningSecrets } from "../../config/signing-secret.js";
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
  // The file log is as forgeable as ALS: only entries signed with the secret authz used are billed.
  const secrets = resolveSigningSecrets(config);
  const verifier = createDecisionVerifier(secrets.secret, secrets.previous);
  // Warnings go to stderr: stdout carries the report (--json is parsed by scripts).
  const logger = createLogger({ level: "warn", destination: process.stderr });
  const totals: MeterCounts & { lines: number } = { lines: 0, ...zeroCounts() };
  await withStores(values, (stores) =>
    withCreditGate(config, stores.ledger, async (credits) => {
      const meter = createMeter({ ledger: stores.ledger, verifier, credits, logger, maxBatch: CHUNK, windowMs: 0 });
      const lines = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
      let chunk: MeterInput[] = [];
      const submit = async () => {
        const counts = await meter.submit(chunk);
        chunk = [];
        for (const k of ["received", "billed", "alreadyBilled", "skipped", "deadLettered", "forged"] as const)
          totals[k] += counts[k];
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
  const json = {
    file,
    lines: totals.lines,
    billed: totals.billed,
    already_billed: totals.alreadyBilled,
    skipped: totals.skipped,
    dead_lettered: totals.deadLettered,
    forged: totals.forged,
  };
  out.result(
    json,
    () =>
      `${file}: ${json.lines} entries; billed ${json.billed}, already billed ${json.already_billed}, skipped ${json.skipped}, dead-lettered ${json.dead_lettered}, refused unsigned ${json.forged}`,
  );
};
