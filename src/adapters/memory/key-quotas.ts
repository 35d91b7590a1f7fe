import { CONCURRENCY_WAIT_MS, dayOf, dayRefusal, type DayFigures, type QuotaRefusal } from "../../domain/rate-limit.js";

/** One key's UTC day: requests and tokens counted, and the tokens of its requests still in flight. */
interface KeyDay {
  day: number;
  requests: number;
  tokens: number;
  inFlight: number;
  /**
   * Decisions not settled yet → the tokens they hold and when their TTL ends (settled ones are forgotten: only their
   * sum matters). Inserted with one TTL as the clock moves, so insertion order is expiry order.
   */
  flying: Map<string, { tokens: number; expiresAt: number }>;
  /**
   * Decisions past their TTL and never settled (access-log entry lost, or a stream outliving it) → their tokens:
   * counted as used, no longer in flight, and still corrected to what they used if the meter settles them late.
   */
  overdue: Map<string, number>;
}

/** Limits of one request beyond the minute's window (0: none). */
export interface KeyQuotaLimits {
  requestsPerDay: number;
  tokensPerDay: number;
  maxConcurrency: number;
}

/**
 * The in-process limiter's daily quotas and requests in flight per key. Memory is bounded by the limits: a day holds
 * at most one entry per request in flight or past its TTL unsettled today (at most the key's requests that day), and
 * yesterday's days and expired places in flight are dropped as the clock moves. A key without daily or concurrency limits holds nothing here.
 */
export class MemoryKeyQuotas {
  private readonly days = new Map<string, KeyDay>();
  /** Key → decision → when its place in flight expires (the meter never saw it end). */
  private readonly flights = new Map<string, Map<string, number>>();
  private sweptDay = -1;

  constructor(private readonly inFlightTtlMs: number) {}

  /** Today's figures for a key with daily quotas, or undefined when it has none. */
  figures(keyId: string, limits: KeyQuotaLimits, now: number): (DayFigures & { inFlight: number }) | undefined {
    if (limits.requestsPerDay <= 0 && limits.tokensPerDay <= 0) return undefined;
    const day = this.days.get(keyId);
    const today = day && day.day === dayOf(now) ? day : undefined;
    if (today) this.expire(today, now);
    return {
      requestsPerDay: limits.requestsPerDay,
      tokensPerDay: limits.tokensPerDay,
      requests: today?.requests ?? 0,
      tokens: today?.tokens ?? 0,
      inFlight: today?.inFlight ?? 0,
    };
  }

  /** Which of these limits refuses one more request of `need` tokens, with its wait; null when all admit it. */
  check(keyId: string, limits: KeyQuotaLimits, need: number, now: number): QuotaRefusal | null {
    const day = this.figures(keyId, limits, now);
    if (day) {
      const refused = dayRefusal(day, day.inFlight, need, now);
      if (refused) return refused;
    }
    if (limits.maxConcurrency > 0 && this.inFlight(keyId, now) >= limits.maxConcurrency) {
      return { dimension: "concurrency", waitMs: CONCURRENCY_WAIT_MS };
    }
    return null;
  }

  /** Requests of the key in flight now (read-only: expired places are not counted, nor dropped). */
  inFlightNow(keyId: string, now: number): number {
    const flight = this.flights.get(keyId);
    if (!flight) return 0;
    let expired = 0;
    for (const expiresAt of flight.values()) {
      if (expiresAt > now) break;
      expired++;
    }
    return flight.size - expired;
  }

  /** Counts an admitted request against the key's day and its requests in flight. */
  hold(keyId: string, decisionId: string, limits: KeyQuotaLimits, tokens: number, now: number): void {
    if (limits.requestsPerDay > 0 || limits.tokensPerDay > 0) {
      const today = dayOf(now);
      this.sweepDays(today);
      let day = this.days.get(keyId);
      if (!day || day.day !== today) {
        day = { day: today, requests: 0, tokens: 0, inFlight: 0, flying: new Map(), overdue: new Map() };
        this.days.set(keyId, day);
      }
      day.requests += 1;
      day.tokens += tokens;
      day.inFlight += tokens;
      day.flying.set(decisionId, { tokens, expiresAt: now + this.inFlightTtlMs });
    }
    if (limits.maxConcurrency > 0) {
      let flight = this.flights.get(keyId);
      if (!flight) this.flights.set(keyId, (flight = new Map()));
      flight.set(decisionId, now + this.inFlightTtlMs);
    }
  }

  /** The meter saw the request end: its day counts what it used, and its place in flight is free. */
  settle(keyId: string, decisionId: string, actualTokens: number): void {
    const day = this.days.get(keyId);
    const held = day && this.take(day, decisionId);
    if (day && held !== undefined) day.tokens += actualTokens - held;
    this.land(keyId, decisionId);
  }

  /** A later step refused the request: it counts nowhere. */
  release(keyId: string, decisionId: string): void {
    const day = this.days.get(keyId);
    const held = day && this.take(day, decisionId);
    if (day && held !== undefined) {
      day.tokens -= held;
      day.requests -= 1;
    }
    this.land(keyId, decisionId);
  }

  /** Forgets a decision's entry of the day, in flight or overdue; returns the tokens it counted. */
  private take(day: KeyDay, decisionId: string): number | undefined {
    const flying = day.flying.get(decisionId);
    if (flying !== undefined) {
      day.flying.delete(decisionId);
      day.inFlight -= flying.tokens;
      return flying.tokens;
    }
    const overdue = day.overdue.get(decisionId);
    if (overdue !== undefined) day.overdue.delete(decisionId);
    return overdue;
  }

  /**
   * Requests past their TTL stop counting as in flight (their tokens stay counted as used until a late settlement
   * corrects them), so a refusal's wait is until midnight, not "1 s" for hours. Only the expired prefix is visited.
   */
  private expire(day: KeyDay, now: number): void {
    for (const [decisionId, entry] of day.flying) {
      if (entry.expiresAt > now) break;
      day.flying.delete(decisionId);
      day.inFlight -= entry.tokens;
      day.overdue.set(decisionId, entry.tokens);
    }
  }

  /** How many keys hold state here (to show memory stays bounded). */
  size(): number {
    return this.days.size + this.flights.size;
  }

  private land(keyId: string, decisionId: string): void {
    const flight = this.flights.get(keyId);
    if (!flight) return;
    flight.delete(decisionId);
    if (flight.size === 0) this.flights.delete(keyId);
  }

  /**
   * Requests of the key in flight now, dropping those whose TTL has passed (their access-log entry was lost). Places
   * are inserted with one TTL as the clock moves, so a Map's insertion order is expiry order: only the expired prefix
   * is visited, never every request in flight (a key with thousands in flight must not cost thousands per Check). Were
   * the clock to step back, a place behind a later one is dropped when that one is: late, never early.
   */
  private inFlight(keyId: string, now: number): number {
    const flight = this.flights.get(keyId);
    if (!flight) return 0;
    for (const [decisionId, expiresAt] of flight) {
      if (expiresAt > now) break;
      flight.delete(decisionId);
    }
    if (flight.size === 0) this.flights.delete(keyId);
    return flight.size;
  }

  /** Once per new day: every key's yesterday is dropped. */
  private sweepDays(today: number): void {
    if (today === this.sweptDay) return;
    this.sweptDay = today;
    for (const [keyId, day] of this.days) if (day.day !== today) this.days.delete(keyId);
  }
}
