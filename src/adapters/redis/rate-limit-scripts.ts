/**
 * The sliding-window log in Redis, as Lua functions over key names so the limiter's own scripts and the combined
 * admission script (quota.ts) share one definition. Kept as TypeScript strings (not .lua files) so `tsc` ships them
 * in dist with no copy step.
 *
 * `req` `<prefix>:{<account id>}:rl:<key id>:req`: sorted set, member = decision id, score = admission time (ms).
 * `tok` `<prefix>:{<account id>}:rl:<key id>:tok`: hash, decision id → reserved (later: settled) tokens; fields
 * `#sum` = their total, `#newest` = the newest admission's time, `#exp` = when the expiry was last pushed out (so a
 * decision reads all three in one HMGET instead of asking the log). Both share the account's `{…}` hash tag with its credit keys, so one script can decide a request's
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
  for i = 1, #old, 500 do
    local last = math.min(i + 499, #old)
    local amounts = redis.call('HMGET', tok, unpack(old, i, last))
    for j = 1, #amounts do freed = freed + (tonumber(amounts[j]) or 0) end
    redis.call('HDEL', tok, unpack(old, i, last))
  end
  redis.call('ZREMRANGEBYSCORE', req, '-inf', cutoff)
  redis.call('HINCRBY', tok, '#sum', 0 - freed) -- never -0: HINCRBY refuses "-0"
end

-- Time of the newest admission in the window, -1 when it is empty, read from the log itself.
local function rate_newest(req)
  local last = redis.call('ZRANGE', req, -1, -1, 'WITHSCORES')
  if #last == 0 then return -1 end
  return tonumber(last[2])
end

-- Prunes the window and reads its figures: w.count, w.sum, w.newest (-1 when empty) and w.refreshed (when the keys'
-- expiry was last pushed out). Returns w and, when a request of need tokens does not fit, the reply refusing it:
-- {0, requestsWaitMs, tokensWaitMs, count, sum, newest}.
local function rate_check(req, tok, now, window, rpm, tpm, need)
  rate_prune(req, tok, now - window)
  local figures = redis.call('HMGET', tok, '#sum', '#newest', '#exp')
  local w = { count = redis.call('ZCARD', req), sum = tonumber(figures[1] or '0'), newest = -1, refreshed = tonumber(figures[3]) }
  if w.count > 0 then w.newest = tonumber(figures[2]) or rate_newest(req) end
  local requestsExcess = w.count + 1 - rpm
  local tokensExcess = w.sum + need - tpm
  if requestsExcess <= 0 and tokensExcess <= 0 then return w, nil end
  local requestsWait = 0
  local tokensWait = 0
  if requestsExcess > 0 then
    requestsWait = window
    if requestsExcess <= w.count then
      local at = redis.call('ZRANGE', req, requestsExcess - 1, requestsExcess - 1, 'WITHSCORES')
      requestsWait = tonumber(at[2]) + window - now
    end
  end
  if tokensExcess > 0 then
    tokensWait = window
    if need <= tpm then
      local entries = redis.call('ZRANGE', req, 0, -1, 'WITHSCORES')
      local freed = 0
      for i = 1, #entries, 2 do
        freed = freed + (tonumber(redis.call('HGET', tok, entries[i])) or 0)
        if freed >= tokensExcess then
          tokensWait = tonumber(entries[i + 1]) + window - now
          break
        end
      end
    end
  end
  return w, {0, requestsWait, tokensWait, w.count, w.sum, w.newest}
end

-- Records an admission that rate_check let through; returns the reply admitting it: {1, 0, 0, count, sum, newest}.
-- The keys' expiry (garbage collection only, on Redis' own clock; the score-based prune is what the window means) is
-- pushed out to window + 10 s at most every 5 s, so no live entry outlives its keys.
local function rate_hold(req, tok, now, window, need, decision, w)
  local newest = math.max(now, w.newest)
  redis.call('ZADD', req, now, decision)
  local refresh = w.refreshed == nil or now - w.refreshed >= 5000 or now < w.refreshed
  if refresh then
    redis.call('HSET', tok, decision, need, '#newest', newest, '#exp', now)
    redis.call('PEXPIRE', req, window + 10000)
    redis.call('PEXPIRE', tok, window + 10000)
  else
    redis.call('HSET', tok, decision, need, '#newest', newest)
  end
  local sum = redis.call('HINCRBY', tok, '#sum', need)
  return {1, 0, 0, w.count + 1, sum, newest}
end
`;

/**
 * KEYS: req, tok. ARGV: now, windowMs, requestsPerMinute, tokensPerMinute, tokens, decisionId.
 * Returns {admitted 0|1, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt (-1 when empty)}.
 */
export const ADMIT_LUA = `${RATE_LUA_FUNCTIONS}
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local need = tonumber(ARGV[5])
local w, refusal = rate_check(KEYS[1], KEYS[2], now, window, tonumber(ARGV[3]), tonumber(ARGV[4]), need)
if refusal then return refusal end
return rate_hold(KEYS[1], KEYS[2], now, window, need, ARGV[6], w)
`;

/** ARGV: decisionId, actualTokens. Replaces a live admission's tokens; no-op once it aged out or was released. */
export const SETTLE_LUA = `
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local actual = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], actual)
redis.call('HINCRBY', KEYS[2], '#sum', actual - old)
return 1
`;

/** ARGV: decisionId. Removes an admission entirely: its request and its tokens (and moves `#newest` if it was it). */
export const RELEASE_LUA = `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], '#sum', 0 - old)
if tonumber(score) >= (tonumber(redis.call('HGET', KEYS[2], '#newest')) or -1) then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 0 then redis.call('HDEL', KEYS[2], '#newest') else redis.call('HSET', KEYS[2], '#newest', last[2]) end
end
return 1
`;

/** The limiter's keys for one API key, under its account's hash tag (the credit keys' slot). */
export function rateKeys(prefix: string, accountId: string, keyId: string): [req: string, tok: string] {
  const scope = `${prefix}:{${accountId}}:rl:${keyId}`;
  return [`${scope}:req`, `${scope}:tok`];
}
