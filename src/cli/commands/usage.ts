import { UsageError } from "../cli-kit.js";

/** Parses --since/--until: an ISO date or time ("2025-01-31", "2025-01-31T12:00:00Z") or epoch milliseconds. */
export function timeFlag(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms))
    throw new UsageError(`${flag} must be an ISO date/time or epoch milliseconds, not "${text}"`);
  return ms;
}
