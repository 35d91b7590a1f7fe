/**
 * The sliding-window log in Redis, one script per operation so each decision is atomic and one round trip.
 * Kept as TypeScript strings (not .lua files) so `tsc` ships them in dist with no copy step.
 *
 * KEYS[1] `<prefix>:{<key id>}:rl:req`: sorted set, member = decision id, score = admission time (ms).
 * KEYS[2] `<prefix>:{<key id>}:rl:tok`: hash, decision id → reserved (later: settled) tokens; field `#sum` = total.
 * Both share the `{<key id>}` hash tag, so they live in one Redis Cluster slot.
 *
 * Time is the caller's `now` (ARGV), not Redis TIME: tests drive it with a controllable clock and every replica's
 * decision is reproducible. Replicas' clocks must agree to well under a second (NTP); the alternative, Redis TIME
 * inside the script, needs no clock agreement but makes the window untestable without real waiting.
 */

/** Drops admissions at or before now − window from both keys and the running sum. */
const PRUNE = `
local function prune(cutoff)
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  if #old == 0 then return end
  local freed = 0
  for i = 1, #old, 500 do
    local last = math.min(i + 499, #old)
    local amounts = redis.call('HMGET', KEYS[2], unpack(old, i, last))
    for j = 1, #amounts do freed = freed + (tonumber(amounts[j]) or 0) end
    redis.call('HDEL', KEYS[2], unpack(old, i, last))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  redis.call('HINCRBY', KEYS[2], '#sum', 0 - freed) -- never -0: HINCRBY refuses "-0"
end
`;

/**
 * ARGV: now, windowMs, requestsPerMinute, tokensPerMinute, tokens, decisionId.
 * Returns {admitted 0|1, requestsWaitMs, tokensWaitMs, requests, tokens, newestAt (-1 when empty)}.
 */
export const ADMIT_LUA = `${PRUNE}
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
local need = tonumber(ARGV[5])
prune(now - window)
local count = redis.call('ZCARD', KEYS[1])
local sum = tonumber(redis.call('HGET', KEYS[2], '#sum') or '0')
local requestsExcess = count + 1 - rpm
local tokensExcess = sum + need - tpm
local function newest()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 0 then return -1 end
  return tonumber(last[2])
end
if requestsExcess > 0 or tokensExcess > 0 then
  local requestsWait = 0
  local tokensWait = 0
  if requestsExcess > 0 then
    requestsWait = window
    if requestsExcess <= count then
      local at = redis.call('ZRANGE', KEYS[1], requestsExcess - 1, requestsExcess - 1, 'WITHSCORES')
      requestsWait = tonumber(at[2]) + window - now
    end
  end
  if tokensExcess > 0 then
    tokensWait = window
    if need <= tpm then
      local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      local freed = 0
      for i = 1, #entries, 2 do
        freed = freed + (tonumber(redis.call('HGET', KEYS[2], entries[i])) or 0)
        if freed >= tokensExcess then
          tokensWait = tonumber(entries[i + 1]) + window - now
          break
        end
      end
    end
  end
  return {0, requestsWait, tokensWait, count, sum, newest()}
end
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('HSET', KEYS[2], ARGV[6], need)
sum = redis.call('HINCRBY', KEYS[2], '#sum', need)
-- Garbage collection only (Redis' own clock): the score-based prune above is what the window means.
redis.call('PEXPIRE', KEYS[1], window + 5000)
redis.call('PEXPIRE', KEYS[2], window + 5000)
return {1, 0, 0, count + 1, sum, newest()}
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

/** ARGV: decisionId. Removes an admission entirely: its request and its tokens. */
export const RELEASE_LUA = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[2], '#sum', 0 - old)
return 1
`;
