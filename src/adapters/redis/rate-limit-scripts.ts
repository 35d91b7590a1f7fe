import { CONCURRENCY_WAIT_MS, IN_FLIGHT_WAIT_MS } from "../../domain/rate-limit.js";

/**
 * The sliding-window log in Redis, as Lua functions over key names so the limiter's own scripts and the combined
 * admission script (quota.ts) share one definition. Kept as TypeScript strings (not .lua files) so `tsc` ships them
 * in dist with no copy step.
 *
 * `req` `<prefix>:{<account id>}:rl:<key id>:req`: sorted set, member = decision id, score = admission time (ms).
 * `tok` `<prefix>:{<account id>}:rl:<key id>:tok`: hash, decision id → tokens, negative while the request is in flight
 * (its expected tokens) and positive once the meter settled it (tokens used); fields `#sum` = their total (absolute),
 * `#fly` = the in-flight part of it, `#newest` = the newest admission's time, `#exp` = when the expiry was last pushed
 * out (so a decision reads them in one HMGET instead of asking the log). Both share the account's `{…}` hash tag with its credit keys, so one script can decide a request's
 * rate limit and its credit reservation inside one Redis Cluster slot.
 *
 * Time is the caller's `now` (ARGV), not Redis TIME: tests drive it with a controllable clock and every replica's
 * decision is reproducible. Replicas' clocks must agree to well under a second (NTP); the alternative, Redis TIME
 * inside the script, needs no clock agreement but makes the window untestable without real waiting.
 */
export const RATE_LUA_FUNCTIONS = `
-- Drops admissions at or before cutoff from both keys and the running sum.
local function rate_prune(req, tok, cutoff)
  local old = redis.call('ZRANGEBYSCORE', req, '-inf', cutoff)
  if #old == 0 then return end
  local freed = 0
  local flying = 0
  for i = 1, #old, 500 do
    local last = math.min(i + 499, #old)
    local amounts = redis.call('HMGET', tok, unpack(old, i, last))
    for j = 1, #amounts do
      local amount = tonumber(amounts[j]) or 0
      if amount < 0 then
        flying = flying - amount
        amount = 0 - amount
      end
      freed = freed + amount
    end
    redis.call('HDEL', tok, unpack(old, i, last))
  end
  redis.call('ZREMRANGEBYSCORE', req, '-inf', cutoff)
  redis.call('HINCRBY', tok, '#sum', 0 - freed) -- never -0: HINCRBY refuses "-0"
  if flying > 0 then redis.call('HINCRBY', tok, '#fly', 0 - flying) end
end

-- Time of the newest admission in the window, -1 when it is empty, read from the log itself.
local function rate_newest(req)
  local last = redis.call('ZRANGE', req, -1, -1, 'WITHSCORES')
  if #last == 0 then return -1 end
  return tonumber(last[2])
end

-- Prunes the window and reads its figures: w.count, w.sum, w.fly (in flight), w.newest (-1 when empty) and
-- w.refreshed (when the keys' expiry was last pushed out). Returns w and, when a request of need tokens does not fit,
-- the reply refusing it: {0, requestsWaitMs, tokensWaitMs, count, sum, newest, inFlightTokens}. The tokens wait is
-- domain/rate-limit.ts tokensWait: a short in_flight_wait when the settled tokens alone leave room (requests in flight
-- are in the way; inFlightTokens says how many they hold), else until enough settled tokens age out.
local function rate_check(req, tok, now, window, rpm, tpm, need)
  rate_prune(req, tok, now - window)
  local figures = redis.call('HMGET', tok, '#sum', '#newest', '#exp', '#fly')
  local w = { count = redis.call('ZCARD', req), sum = tonumber(figures[1] or '0'), newest = -1, refreshed = tonumber(figures[3]), fly = tonumber(figures[4] or '0') }
  if w.count > 0 then w.newest = tonumber(figures[2]) or rate_newest(req) end
  local requestsExcess = w.count + 1 - rpm
  local tokensExcess = w.sum + need - tpm
  if requestsExcess <= 0 and tokensExcess <= 0 then return w, nil end
  local requestsWait = 0
  local tokensWait = 0
  local inFlight = 0
  if requestsExcess > 0 then
    requestsWait = window
    if requestsExcess <= w.count then
      local at = redis.call('ZRANGE', req, requestsExcess - 1, requestsExcess - 1, 'WITHSCORES')
      requestsWait = tonumber(at[2]) + window - now
    end
  end
  if tokensExcess > 0 then
    tokensWait = window
    local settledExcess = w.sum - w.fly + need - tpm
    if need > tpm then
      tokensWait = window
    elseif settledExcess <= 0 then
      tokensWait = ${IN_FLIGHT_WAIT_MS}
      inFlight = w.fly
    else
      local entries = redis.call('ZRANGE', req, 0, -1, 'WITHSCORES')
      local freed = 0
      for i = 1, #entries, 2 do
        freed = freed + math.max(0, tonumber(redis.call('HGET', tok, entries[i])) or 0)
        if freed >= settledExcess then
          tokensWait = tonumber(entries[i + 1]) + window - now
          break
        end
      end
    end
  end
  return w, {0, requestsWait, tokensWait, w.count, w.sum, w.newest, inFlight}
end

-- Records an admission that rate_check let through, in flight (negative) until settled; returns the reply admitting
-- it: {1, 0, 0, count, sum, newest, 0}.
-- The keys' expiry (garbage collection only, on Redis' own clock; the score-based prune is what the window means) is
-- pushed out to window + 10 s at most every 5 s, so no live entry outlives its keys.
local function rate_hold(req, tok, now, window, need, decision, w)
  local newest = math.max(now, w.newest)
  redis.call('ZADD', req, now, decision)
  local refresh = w.refreshed == nil or now - w.refreshed >= 5000 or now < w.refreshed
  -- w.sum and w.fly were read in this run after the prune, so the new totals go in the same HSET (one command, not
  -- three); integers written with %.0f, never a float's exponent form, which HINCRBY would refuse later.
  local sum = w.sum + need
  local totals = string.format('%.0f', sum)
  local fly = string.format('%.0f', w.fly + need)
  if refresh then
    redis.call('HSET', tok, decision, 0 - need, '#newest', newest, '#exp', now, '#sum', totals, '#fly', fly)
    redis.call('PEXPIRE', req, window + 10000)
    redis.call('PEXPIRE', tok, window + 10000)
  else
    redis.call('HSET', tok, decision, 0 - need, '#newest', newest, '#sum', totals, '#fly', fly)
  end
  return {1, 0, 0, w.count + 1, sum, newest, 0}
end

-- Today's figures of a key with daily quotas (day hash: #req, #tok, #fly = the part of #tok in flight, and decision ->
-- tokens while in flight, or minus them once past their TTL unsettled: still counted, no longer in flight), or nil
-- when it has none.
local function day_read(day, rpd, tpd)
  if rpd <= 0 and tpd <= 0 then return nil end
  local f = redis.call('HMGET', day, '#req', '#tok', '#fly')
  return { key = day, req = tonumber(f[1] or '0'), tok = tonumber(f[2] or '0'), fly = tonumber(f[3] or '0') }
end

-- Drops the places in flight past their TTL (conc: decision -> when it ends; their access-log entry was lost, or the
-- stream outlived it). In today's day hash their tokens stop counting as in flight and stay counted as used (the entry
-- turns negative, so a late settlement still corrects it), or a tokens-per-day refusal would ask for 1 s until
-- midnight. Only the expired entries are visited.
local function quota_expire(d, conc, now)
  local gone = redis.call('ZRANGEBYSCORE', conc, '-inf', now)
  if #gone == 0 then return end
  if d and d.fly > 0 then
    local freed = 0
    for i = 1, #gone, 500 do
      local last = math.min(i + 499, #gone)
      local held = redis.call('HMGET', d.key, unpack(gone, i, last))
      for j = 1, #held do
        local tokens = tonumber(held[j])
        if tokens and tokens > 0 then
          redis.call('HSET', d.key, gone[i + j - 1], 0 - tokens)
          freed = freed + tokens
        end
      end
    end
    if freed > 0 then
      redis.call('HINCRBY', d.key, '#fly', 0 - freed)
      d.fly = d.fly - freed
    end
  end
  redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
end

-- Whether the daily quotas and the concurrency limit (conc: sorted set, decision -> when its place in flight expires)
-- admit one more request of need tokens. When one refuses: {code, waitMs, inFlightTokens}, code 2 requests per day,
-- 3 tokens per day, 4 concurrency (the rule of domain/rate-limit.ts dayRefusal). Expired places are dropped first.
local function quota_refusal(d, conc, now, rpd, tpd, maxc, need, to_midnight)
  if d or maxc > 0 then quota_expire(d, conc, now) end
  if d then
    if rpd > 0 and d.req + 1 > rpd then return {2, to_midnight, 0} end
    if tpd > 0 and d.tok + need > tpd then
      if need <= tpd and d.tok - d.fly + need <= tpd then return {3, ${IN_FLIGHT_WAIT_MS}, d.fly} end
      return {3, to_midnight, 0}
    end
  end
  if maxc > 0 and redis.call('ZCARD', conc) >= maxc then return {4, ${CONCURRENCY_WAIT_MS}, 0} end
  return nil
end

-- Counts an admitted request against today (the day key lives until an hour past midnight) and its place in flight
-- (until settled, released, or ttl has passed; also kept for a key with daily quotas alone, so its day's tokens stop
-- counting as in flight after ttl).
local function quota_hold(day, conc, d, need, decision, now, to_midnight, maxc, ttl)
  if d then
    -- d was read in this run (and kept current by quota_expire): the new totals go in one HSET, not three HINCRBYs.
    redis.call('HSET', day, '#req', string.format('%.0f', d.req + 1), '#tok', string.format('%.0f', d.tok + need),
      '#fly', string.format('%.0f', d.fly + need), decision, need)
    if d.req == 0 then redis.call('PEXPIRE', day, to_midnight + 3600000) end
    d.req = d.req + 1
    d.tok = d.tok + need
    d.fly = d.fly + need
  end
  if d or maxc > 0 then
    redis.call('ZADD', conc, now + ttl, decision)
    redis.call('PEXPIRE', conc, ttl + 10000)
  end
end

-- Completes a rate reply with what refused (0: nothing, or the minute's window) and today's figures (-1: no quota).
local function with_day(reply, d, code)
  reply[8] = code
  reply[9] = d and d.req or -1
  reply[10] = d and d.tok or -1
  return reply
end

-- The whole decision for one request: the minute's window, then today's quotas and the requests in flight. Returns
-- the rate reply and whether it was admitted; hold (a function) runs first when admitted, so a caller that holds more
-- (credit) can refuse after the checks and before any write by passing a hold that declines.
local function key_decide(req, tok, day, conc, now, window, rpm, tpm, need, decision, rpd, tpd, maxc, to_midnight, ttl)
  local w, refusal = rate_check(req, tok, now, window, rpm, tpm, need)
  local d = day_read(day, rpd, tpd)
  if refusal then return with_day(refusal, d, 0), nil end
  local q = quota_refusal(d, conc, now, rpd, tpd, maxc, need, to_midnight)
  if q then return with_day({0, q[2], 0, w.count, w.sum, w.newest, q[3]}, d, q[1]), nil end
  return nil, function()
    quota_hold(day, conc, d, need, decision, now, to_midnight, maxc, ttl)
    return with_day(rate_hold(req, tok, now, window, need, decision, w), d, 0)
  end
end
`;

/**
 * KEYS: req, tok, day, conc. ARGV: now, windowMs, requestsPerMinute, tokensPerMinute, tokens, decisionId,
 * requestsPerDay, tokensPerDay, maxConcurrency (0: none), ms to midnight UTC, in-flight TTL.
 * Returns {admitted 0|1, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt (-1 when empty), inFlightTokens,
 * refusedBy (0, or 2 requests per day, 3 tokens per day, 4 concurrency: then requestsWaitMs is its wait),
 * requestsToday, tokensToday (-1 without daily quotas)}.
 */
export const ADMIT_LUA = `${RATE_LUA_FUNCTIONS}
local refusal, hold = key_decide(KEYS[1], KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]),
  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]))
if refusal then return refusal end
return hold()
`;

/**
 * KEYS: req, tok, day (today's), conc. ARGV: decisionId, actualTokens. Replaces a live admission's tokens with those
 * used (settled: no longer in flight) in the window and in today's quota, and frees its place in flight; each part a
 * no-op once it aged out, the day changed, or it was released.
 */
export const SETTLE_LUA = `
local actual = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or 'none')
if held then
  redis.call('HDEL', KEYS[3], ARGV[1])
  -- Negative: past its TTL, no longer in flight (quota_expire), still counted.
  if held < 0 then held = 0 - held else redis.call('HINCRBY', KEYS[3], '#fly', 0 - held) end
  if actual ~= held then redis.call('HINCRBY', KEYS[3], '#tok', actual - held) end
end
redis.call('ZREM', KEYS[4], ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if old < 0 then
  redis.call('HINCRBY', KEYS[2], '#fly', old)
  old = 0 - old
end
redis.call('HSET', KEYS[2], ARGV[1], actual)
if actual ~= old then redis.call('HINCRBY', KEYS[2], '#sum', actual - old) end
return 1
`;

/**
 * KEYS: req, tok, day, conc. ARGV: decisionId. Removes an admission entirely: its request and its tokens from the
 * window (moving `#newest` if it was it) and from today, and its place in flight.
 */
export const RELEASE_LUA = `
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or 'none')
if held then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[3], '#req', -1)
  if held < 0 then held = 0 - held else redis.call('HINCRBY', KEYS[3], '#fly', 0 - held) end
  redis.call('HINCRBY', KEYS[3], '#tok', 0 - held)
end
redis.call('ZREM', KEYS[4], ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
if old < 0 then
  redis.call('HINCRBY', KEYS[2], '#fly', old)
  old = 0 - old
end
if old > 0 then redis.call('HINCRBY', KEYS[2], '#sum', 0 - old) end
if tonumber(score) >= (tonumber(redis.call('HGET', KEYS[2], '#newest')) or -1) then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 0 then redis.call('HDEL', KEYS[2], '#newest') else redis.call('HSET', KEYS[2], '#newest', last[2]) end
end
return 1
`;

/**
 * KEYS: req, tok, day, conc. ARGV: now, windowMs, requestsPerDay, tokensPerDay, maxConcurrency. Reads a key's figures
 * without writing (GET /v1/key): {requests, tokens, newestAt (-1 when empty), requestsToday, tokensToday (-1 without
 * daily quotas), inFlight}.
 */
export const PEEK_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now - window), '+inf', 'WITHSCORES')
local count, sum, newest = 0, 0, -1
for i = 1, #live, 2 do
  count = count + 1
  sum = sum + math.abs(tonumber(redis.call('HGET', KEYS[2], live[i])) or 0)
  newest = math.max(newest, tonumber(live[i + 1]))
end
local requests_today, tokens_today = -1, -1
if tonumber(ARGV[3]) > 0 or tonumber(ARGV[4]) > 0 then
  local f = redis.call('HMGET', KEYS[3], '#req', '#tok')
  requests_today, tokens_today = tonumber(f[1] or '0'), tonumber(f[2] or '0')
end
local fly = 0
if tonumber(ARGV[5]) > 0 then fly = redis.call('ZCOUNT', KEYS[4], '(' .. string.format('%.0f', now), '+inf') end
return {count, sum, newest, requests_today, tokens_today, fly}
`;

/**
 * A key's daily-quota and in-flight keys, under the same hash tag: `<scope>:day:<UTC day number>` (hash) and
 * `<scope>:conc` (sorted set).
 */
export function quotaKeys(prefix: string, accountId: string, keyId: string, day: number): [day: string, conc: string] {
  const scope = `${prefix}:{${accountId}}:rl:${keyId}`;
  return [`${scope}:day:${day}`, `${scope}:conc`];
}

/** The limiter's keys for one API key, under its account's hash tag (the credit keys' slot). */
export function rateKeys(prefix: string, accountId: string, keyId: string): [req: string, tok: string] {
  const scope = `${prefix}:{${accountId}}:rl:${keyId}`;
  return [`${scope}:req`, `${scope}:tok`];
}
