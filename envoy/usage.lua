-- Tollgate usage filter (Envoy HTTP Lua filter, LuaJIT / Lua 5.1).
--
-- Request:  rewrites the top-level "model" of an allowed chat request to the provider's model id and, for streams,
--           forces stream_options.include_usage = true, using the headers ext_authz set (then removes them).
-- Response: reads token usage from the provider's JSON body or SSE stream without buffering the stream, and writes
--           it to dynamic metadata namespace "tollgate.usage" for the access log (and so the meter). When it cannot
--           (compressed, cut short, unreadable, no usage) it estimates and says why in estimate_reason.
--
-- Nothing is written at request time, on purpose. Metadata set in envoy_on_request would reach the access log, but
-- this filter runs before the router, so it cannot know whether the request will reach a provider (connect failure,
-- no healthy host); and when no response headers ever come (the client resets first) envoy_on_response never runs,
-- while a response body the client abandons leaves the coroutine unresumed (hence the metadata kept current per
-- chunk below). The meter bills an admitted request without usage from Envoy's own facts instead: the signed prompt
-- estimate, the upstream send (time_to_last_upstream_tx_byte / %REQUEST_TX_DURATION%) and the response flags. Envoy's
-- own stream-idle and reset replies do pass through envoy_on_response (status >= 400, zero usage); the meter reads
-- such zero usage with those flags as unanswered.
--
-- The TypeScript twin is src/dataplane/usage/extract.ts; both are held to test/vectors/{usage,request-rewrite}.
-- Only envoy_on_request and envoy_on_response are globals (see the test hook at the end for the harness).

local byte, sub, find, char, gsub, format = string.byte, string.sub, string.find, string.char, string.gsub, string.format
local concat, floor, ceil, huge = table.concat, math.floor, math.ceil, math.huge
local tonumber, tostring, type, pcall, error, setmetatable, getmetatable =
  tonumber, tostring, type, pcall, error, setmetatable, getmetatable

local AUTHZ_NS = "envoy.filters.http.ext_authz"
local USAGE_NS = "tollgate.usage"
local MODEL_HEADER = "x-tollgate-upstream-model"
local STREAM_HEADER = "x-tollgate-stream"
-- JSON bodies are accumulated to be parsed whole; past this size we stop and estimate instead (the twin agrees).
local MAX_JSON_BODY_BYTES = 8 * 1024 * 1024

---------------------------------------------------------------------------------------------------------------------
-- JSON decoder: strict RFC 8259 (the same language JSON.parse accepts), so the Lua filter and the TS twin agree on
-- which bodies are JSON at all. Objects and arrays carry marker metatables; null is a sentinel so that
-- `"usage": null` and a missing usage stay distinguishable from objects.
---------------------------------------------------------------------------------------------------------------------

local NULL = setmetatable({}, { __tostring = function() return "null" end })
local OBJECT_MT = {}
local ARRAY_MT = {}
local FAIL = {} -- error value for malformed JSON (a table, so it never collides with a runtime error string)

local function is_object(v) return type(v) == "table" and getmetatable(v) == OBJECT_MT end
local function is_array(v) return type(v) == "table" and getmetatable(v) == ARRAY_MT end

local ESCAPE_IN = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t",
}

-- Code point to UTF-8; lone surrogates become their 3-byte form, so each still counts as one character.
local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40, 0x80 + floor(cp / 0x40) % 0x40,
    0x80 + cp % 0x40)
end

local function skip_ws(s, i)
  return find(s, "[^ \t\r\n]", i) or (#s + 1)
end

-- Parses the string starting at the quote at i; returns the decoded string and the position after the closing quote.
local function parse_string(s, i)
  local parts, n, j = nil, 0, i + 1
  while true do
    local k = find(s, '[%z\1-\31\\"]', j)
    if not k then error(FAIL) end
    local c = byte(s, k)
    if c == 34 then
      if parts == nil then return sub(s, j, k - 1), k + 1 end
      n = n + 1; parts[n] = sub(s, j, k - 1)
      return concat(parts), k + 1
    elseif c == 92 then
      parts = parts or {}
      n = n + 1; parts[n] = sub(s, j, k - 1)
      local e = byte(s, k + 1)
      if e == 117 then
        local hex = sub(s, k + 2, k + 5)
        if not find(hex, "^%x%x%x%x$") then error(FAIL) end
        local cp = tonumber(hex, 16)
        j = k + 6
        if cp >= 0xD800 and cp <= 0xDBFF and sub(s, j, j + 1) == "\\u" then
          local hex2 = sub(s, j + 2, j + 5)
          if find(hex2, "^%x%x%x%x$") then
            local lo = tonumber(hex2, 16)
            if lo >= 0xDC00 and lo <= 0xDFFF then
              cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
              j = j + 6
            end
          end
        end
        n = n + 1; parts[n] = utf8_char(cp)
      else
        local m = e and ESCAPE_IN[e]
        if not m then error(FAIL) end
        n = n + 1; parts[n] = m
        j = k + 2
      end
    else
      error(FAIL) -- raw control character inside a string
    end
  end
end

local function parse_number(s, i)
  local j = i
  if byte(s, j) == 45 then j = j + 1 end
  local c = byte(s, j)
  if c == 48 then
    j = j + 1
  elseif c and c >= 49 and c <= 57 then
    local _, e = find(s, "^%d*", j + 1)
    j = e + 1
  else
    error(FAIL)
  end
  if byte(s, j) == 46 then
    local _, e = find(s, "^%d+", j + 1)
    if not e then error(FAIL) end
    j = e + 1
  end
  c = byte(s, j)
  if c == 101 or c == 69 then
    j = j + 1
    c = byte(s, j)
    if c == 43 or c == 45 then j = j + 1 end
    local _, e = find(s, "^%d+", j)
    if not e then error(FAIL) end
    j = e + 1
  end
  return tonumber(sub(s, i, j - 1)), j
end

local parse_value

local function parse_object(s, i)
  local obj = setmetatable({}, OBJECT_MT)
  i = skip_ws(s, i + 1)
  if byte(s, i) == 125 then return obj, i + 1 end
  while true do
    if byte(s, i) ~= 34 then error(FAIL) end
    local key
    key, i = parse_string(s, i)
    i = skip_ws(s, i)
    if byte(s, i) ~= 58 then error(FAIL) end
    local v
    v, i = parse_value(s, skip_ws(s, i + 1))
    obj[key] = v -- duplicate keys: the last wins, as in JSON.parse
    i = skip_ws(s, i)
    local c = byte(s, i)
    if c == 125 then return obj, i + 1 end
    if c ~= 44 then error(FAIL) end
    i = skip_ws(s, i + 1)
  end
end

local function parse_array(s, i)
  local arr, n = setmetatable({}, ARRAY_MT), 0
  i = skip_ws(s, i + 1)
  if byte(s, i) == 93 then arr.n = 0; return arr, i + 1 end
  while true do
    local v
    v, i = parse_value(s, i)
    n = n + 1; arr[n] = v
    i = skip_ws(s, i)
    local c = byte(s, i)
    if c == 93 then arr.n = n; return arr, i + 1 end
    if c ~= 44 then error(FAIL) end
    i = skip_ws(s, i + 1)
  end
end

-- Parses the value starting exactly at i (no leading whitespace); returns it and the position after it.
parse_value = function(s, i)
  local c = byte(s, i)
  if c == 123 then return parse_object(s, i) end
  if c == 91 then return parse_array(s, i) end
  if c == 34 then return parse_string(s, i) end
  if c == 116 then if sub(s, i, i + 3) == "true" then return true, i + 4 end error(FAIL) end
  if c == 102 then if sub(s, i, i + 4) == "false" then return false, i + 5 end error(FAIL) end
  if c == 110 then if sub(s, i, i + 3) == "null" then return NULL, i + 4 end error(FAIL) end
  return parse_number(s, i)
end

-- Decodes a whole JSON text; returns nil when it is not valid JSON.
local function json_decode(s)
  local ok, v = pcall(function()
    local value, i = parse_value(s, skip_ws(s, 1))
    if skip_ws(s, i) ~= #s + 1 then error(FAIL) end
    return value
  end)
  if ok then return v end
  return nil
end

-- Encodes a string the way JSON.stringify does (short escapes, \u00xx for other controls, UTF-8 passed through),
-- so the rewritten body is byte-identical to the TS twin's.
local ESCAPE_OUT = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t" }
local function json_string(str)
  return '"' .. (gsub(str, '[%z\1-\31\\"]', function(c)
    return ESCAPE_OUT[c] or format("\\u%04x", byte(c))
  end)) .. '"'
end

---------------------------------------------------------------------------------------------------------------------
-- Request rewrite: exact surgery on top-level members; nothing else in the body changes by a byte.
---------------------------------------------------------------------------------------------------------------------

-- Scans the object whose "{" is at i. Returns its members ({key, vstart, vend}: vend is the last byte of the value)
-- and the position after its "}". Keys are decoded, so "mod\u0065l" is "model", as every JSON parser sees it.
local function scan_members(s, i)
  local members, n = {}, 0
  i = skip_ws(s, i + 1)
  if byte(s, i) == 125 then return members, i + 1 end
  while true do
    if byte(s, i) ~= 34 then error(FAIL) end
    local key
    key, i = parse_string(s, i)
    i = skip_ws(s, i)
    if byte(s, i) ~= 58 then error(FAIL) end
    local vstart = skip_ws(s, i + 1)
    local _, after = parse_value(s, vstart)
    n = n + 1; members[n] = { key = key, vstart = vstart, vend = after - 1 }
    i = skip_ws(s, after)
    local c = byte(s, i)
    if c == 125 then return members, i + 1 end
    if c ~= 44 then error(FAIL) end
    i = skip_ws(s, i + 1)
  end
end

-- New members go right after the last member's value (or right after "{"), so whitespace layout is kept.
local function insertion(s, open_pos, members, texts)
  local last = members[#members]
  local at = last and (last.vend + 1) or (open_pos + 1)
  local text = concat(texts, ",")
  if last then text = "," .. text end
  return { first = at, last = at - 1, text = text }
end

local function rewrite_body(s, upstream_model, stream)
  local open = skip_ws(s, 1)
  if byte(s, open) ~= 123 then error(FAIL) end
  local members, after = scan_members(s, open)
  if skip_ws(s, after) ~= #s + 1 then error(FAIL) end

  local edits, adds = {}, {}
  if upstream_model ~= nil then
    local encoded, found = json_string(upstream_model), false
    for _, m in ipairs(members) do
      -- Every duplicate is rewritten: parsers disagree on which duplicate wins, and none may reach the provider.
      if m.key == "model" then
        edits[#edits + 1] = { first = m.vstart, last = m.vend, text = encoded }
        found = true
      end
    end
    if not found then adds[#adds + 1] = '"model":' .. encoded end
  end
  if stream then
    local found = false
    for _, m in ipairs(members) do
      if m.key == "stream_options" then
        found = true
        if byte(s, m.vstart) == 123 then
          local inner = scan_members(s, m.vstart)
          local has = false
          for _, im in ipairs(inner) do
            if im.key == "include_usage" then
              has = true
              edits[#edits + 1] = { first = im.vstart, last = im.vend, text = "true" }
            end
          end
          if not has then edits[#edits + 1] = insertion(s, m.vstart, inner, { '"include_usage":true' }) end
        else
          edits[#edits + 1] = { first = m.vstart, last = m.vend, text = '{"include_usage":true}' }
        end
      end
    end
    if not found then adds[#adds + 1] = '"stream_options":{"include_usage":true}' end
  end
  if #adds > 0 then edits[#edits + 1] = insertion(s, open, members, adds) end

  -- Edits never overlap; applying them from the back keeps every earlier position valid.
  table.sort(edits, function(a, b) return a.first > b.first end)
  for _, e in ipairs(edits) do
    s = sub(s, 1, e.first - 1) .. e.text .. sub(s, e.last + 1)
  end
  return s
end

-- Returns the rewritten body, or nil when the body is not a JSON object (authz already rejected those).
local function rewrite_request_body(body, upstream_model, stream)
  local ok, out = pcall(rewrite_body, body, upstream_model, stream)
  if ok then return out end
  return nil
end

---------------------------------------------------------------------------------------------------------------------
-- Usage extraction: a small state machine fed chunk by chunk.
---------------------------------------------------------------------------------------------------------------------

-- Token counts must be non-negative integers; anything else a provider sends counts as 0.
local function count(v)
  if type(v) == "number" and v == v and v > 0 and v ~= huge then return floor(v) end
  return 0
end

-- Characters are Unicode code points: every byte that is not a UTF-8 continuation byte starts one.
local function chars(str)
  local _, n = gsub(str, "[^\128-\191]", "")
  return n
end

local function read_usage(u)
  local cached
  local pd = u.prompt_tokens_details
  if is_object(pd) and type(pd.cached_tokens) == "number" then
    cached = count(pd.cached_tokens)
  else
    -- DeepSeek reports cache hits as prompt_cache_hit_tokens (older responses carry no prompt_tokens_details).
    cached = count(u.prompt_cache_hit_tokens)
  end
  local cd = u.completion_tokens_details
  local reasoning = 0
  if is_object(cd) then reasoning = count(cd.reasoning_tokens) end
  local prompt, completion = count(u.prompt_tokens), count(u.completion_tokens)
  -- Google reports thinking tokens beside completion_tokens (its total_tokens counts both), OpenAI and DeepSeek
  -- inside them; completion_tokens here is OpenAI's (all output billed), so tokens reported beside are added in.
  if reasoning > 0 and (reasoning > completion or count(u.total_tokens) == prompt + completion + reasoning) then
    completion = completion + reasoning
  end
  return {
    prompt_tokens = prompt,
    completion_tokens = completion,
    cached_tokens = cached,
    reasoning_tokens = reasoning,
  }
end

-- Counts the meter could not bill (it refuses cached above prompt, reasoning above completion, and counts past
-- 2^53): such usage is not read, and the response is estimated as "invalid_usage" instead of never billed.
local MAX_COUNT = 9007199254740991
local function billable(u)
  return u.cached_tokens <= u.prompt_tokens and u.reasoning_tokens <= u.completion_tokens
    and u.prompt_tokens <= MAX_COUNT and u.completion_tokens <= MAX_COUNT
end

-- Reads usage (last non-null wins) and counts completion text from one chat.completion(.chunk) object;
-- `part` is "delta" for stream chunks and "message" for whole responses.
local function take_object(ex, obj, part)
  if is_object(obj.usage) then
    local u = read_usage(obj.usage)
    if billable(u) then ex.usage, ex.invalid_usage = u, false else ex.usage, ex.invalid_usage = nil, true end
  end
  local choices = obj.choices
  if not is_array(choices) then return end
  for ci = 1, choices.n do
    local choice = choices[ci]
    local d = is_object(choice) and choice[part]
    if is_object(d) then
      if type(d.content) == "string" then ex.text_chars = ex.text_chars + chars(d.content) end
      if type(d.reasoning_content) == "string" then ex.text_chars = ex.text_chars + chars(d.reasoning_content) end
      local calls = d.tool_calls
      if is_array(calls) then
        for ti = 1, calls.n do
          local call = calls[ti]
          local fn = is_object(call) and call["function"]
          if is_object(fn) and type(fn.arguments) == "string" then
            ex.text_chars = ex.text_chars + chars(fn.arguments)
          end
        end
      end
    end
  end
end

local function media_kind(content_type)
  if type(content_type) ~= "string" then return "other" end
  local mt = content_type:lower():match("^%s*([^;%s]*)")
  if mt == "text/event-stream" then return "sse" end
  if mt == "application/json" or mt:match("%+json$") then return "json" end
  return "other"
end

-- A content-encoding other than identity (a provider that ignored accept-encoding: identity): nothing in the body
-- can be read, so usage is estimated and marked "compressed". Codings are case-insensitive and comma-separated.
local function is_compressed(content_encoding)
  if type(content_encoding) ~= "string" then return false end
  for coding in content_encoding:lower():gmatch("[^,%s]+") do
    if coding ~= "identity" then return true end
  end
  return false
end

local function new_extractor(content_type, status, prompt_tokens_estimate, content_encoding)
  local compressed = is_compressed(content_encoding)
  return {
    -- A compressed body is not parsed at all: its bytes are only counted.
    kind = compressed and "other" or media_kind(content_type),
    compressed = compressed,
    bytes = 0,
    status = tonumber(status) or 0,
    estimate = count(prompt_tokens_estimate),
    text_chars = 0,
    usage = nil,
    invalid_usage = false,
    saw_done = false,
    json_ok = false,
    -- SSE state: the unterminated tail of the current line, the current event's data lines, and whether a "\r"
    -- ended the previous chunk (a "\n" opening the next chunk then belongs to the same line break).
    line = "",
    data = {},
    skip_lf = false,
    -- JSON state: raw chunks, joined once at the end.
    parts = {},
    size = 0,
    overflow = false,
  }
end

local function dispatch_event(ex)
  local data = ex.data
  if #data == 0 then return end
  local text = concat(data, "\n")
  ex.data = {}
  if text == "[DONE]" then ex.saw_done = true; return end
  local v = json_decode(text)
  if is_object(v) then take_object(ex, v, "delta") end
end

-- One SSE line (WHATWG EventSource rules): blank dispatches, ":" is a comment, "data" accumulates.
local function sse_line(ex, line)
  if line == "" then return dispatch_event(ex) end
  if byte(line, 1) == 58 then return end
  local colon = find(line, ":", 1, true)
  local field, value
  if colon then
    field = sub(line, 1, colon - 1)
    value = sub(line, colon + 1)
    if byte(value, 1) == 32 then value = sub(value, 2) end
  else
    field, value = line, ""
  end
  if field == "data" then ex.data[#ex.data + 1] = value end
end

local function push(ex, chunk)
  ex.bytes = ex.bytes + #chunk
  if ex.kind == "json" then
    if ex.overflow then return end
    ex.size = ex.size + #chunk
    if ex.size > MAX_JSON_BODY_BYTES then ex.overflow = true; ex.parts = {}; return end
    ex.parts[#ex.parts + 1] = chunk
    return
  end
  if ex.kind ~= "sse" then return end
  local buf = ex.line .. chunk
  if ex.skip_lf and #buf > 0 then
    if byte(buf, 1) == 10 then buf = sub(buf, 2) end
    ex.skip_lf = false
  end
  local pos, len = 1, #buf
  while true do
    local k = find(buf, "[\r\n]", pos)
    if not k then break end
    local line = sub(buf, pos, k - 1)
    if byte(buf, k) == 13 then
      if k == len then ex.skip_lf = true; pos = k + 1
      elseif byte(buf, k + 1) == 10 then pos = k + 2
      else pos = k + 1 end
    else
      pos = k + 1
    end
    sse_line(ex, line)
  end
  ex.line = sub(buf, pos)
end

-- The metadata for the response as seen so far. cut_short means the stream did not end normally; the result is
-- then also what stays in metadata if Envoy abandons the filter mid-stream (reset, client gone).
local function result(ex, cut_short)
  local r
  if ex.usage then
    r = { prompt_tokens = ex.usage.prompt_tokens, completion_tokens = ex.usage.completion_tokens,
      cached_tokens = ex.usage.cached_tokens, reasoning_tokens = ex.usage.reasoning_tokens, source = "provider" }
  elseif ex.status >= 400 then
    -- An upstream error costs nothing.
    r = { prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0, reasoning_tokens = 0, source = "provider" }
  else
    -- Completion: a token per 4 characters of the text seen; of a compressed body, per 4 of its bytes (all there is).
    local seen = ex.compressed and ex.bytes or ex.text_chars
    r = { prompt_tokens = ex.estimate, completion_tokens = ceil(seen / 4), cached_tokens = 0,
      reasoning_tokens = 0, source = "estimate" }
  end
  -- Why the counts are not the provider's, read whole ("" when they are).
  if r.source == "estimate" and ex.compressed then
    r.estimate_reason = "compressed"
  elseif cut_short then
    r.estimate_reason = "cut_short"
  elseif r.source ~= "estimate" then
    r.estimate_reason = ""
  elseif ex.overflow then
    r.estimate_reason = "too_large"
  elseif ex.invalid_usage then
    r.estimate_reason = "invalid_usage"
  elseif ex.kind == "other" or (ex.kind == "json" and not ex.json_ok) then
    r.estimate_reason = "unreadable"
  else
    r.estimate_reason = "no_usage"
  end
  if cut_short then
    r.complete = false
  elseif ex.status >= 400 or ex.compressed then
    r.complete = true
  elseif ex.kind == "sse" then
    r.complete = ex.saw_done or ex.usage ~= nil
  elseif ex.kind == "json" then
    r.complete = ex.json_ok
  else
    r.complete = true
  end
  return r
end

-- End of stream: an unterminated last line or event is discarded (EventSource semantics); a JSON body is parsed.
local function finish(ex)
  if ex.kind == "json" and not ex.overflow then
    local v = json_decode(concat(ex.parts))
    ex.parts = {}
    if v ~= nil then ex.json_ok = true end
    if is_object(v) then take_object(ex, v, "message") end
  end
  return result(ex, false)
end

---------------------------------------------------------------------------------------------------------------------
-- Envoy entry points.
---------------------------------------------------------------------------------------------------------------------

function envoy_on_request(handle)
  local headers = handle:headers()
  local model = headers:get(MODEL_HEADER)
  local stream = headers:get(STREAM_HEADER)
  if model == nil and stream == nil then return end
  -- Internal headers never reach the provider, whatever happens below.
  headers:remove(MODEL_HEADER)
  headers:remove(STREAM_HEADER)
  -- Only authz's own headers are obeyed: without its decision the headers came from the client and are just dropped.
  local authz = handle:streamInfo():dynamicMetadata():get(AUTHZ_NS)
  if type(authz) ~= "table" or authz.decision_id == nil then return end
  local body = handle:body(true)
  if body == nil or body:length() == 0 then return end
  local old = body:getBytes(0, body:length())
  local new = rewrite_request_body(old, model, stream == "1")
  if new == nil then
    handle:logWarn("tollgate usage: request body is not a JSON object; left unchanged")
    return
  end
  if new ~= old then
    body:setBytes(new)
    headers:replace("content-length", tostring(#new))
  end
end

local RESULT_KEYS = { "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "source", "complete",
  "estimate_reason" }

local function publish(meta, r, last)
  for _, k in ipairs(RESULT_KEYS) do
    if last[k] ~= r[k] then
      meta:set(USAGE_NS, k, r[k])
      last[k] = r[k]
    end
  end
end

function envoy_on_response(handle)
  local info = handle:streamInfo():dynamicMetadata()
  local authz = info:get(AUTHZ_NS)
  -- Only requests authz admitted are metered; everything else passes untouched.
  if type(authz) ~= "table" or authz.decision_id == nil then return end
  local headers = handle:headers()
  local ex = new_extractor(headers:get("content-type"), headers:get(":status"), authz.prompt_tokens_estimate,
    headers:get("content-encoding"))
  -- Metadata is kept current after every chunk, marked incomplete: if the stream is reset, Envoy never resumes this
  -- coroutine, and the access log must still carry the best estimate rather than nothing.
  local last = {}
  publish(info, result(ex, true), last)
  for chunk in handle:bodyChunks() do
    local n = chunk:length()
    if n > 0 then
      push(ex, chunk:getBytes(0, n))
      -- A compressed body's estimate grows with its bytes: kept current like a stream's.
      if ex.kind == "sse" or ex.compressed then publish(info, result(ex, true), last) end
    end
  end
  publish(info, finish(ex), last)
end

-- Test hook: test/lua/harness.lua sets this global before loading the file, to reuse the decoder and encoder.
-- In Envoy it is nil, so the chunk defines nothing but the two entry points and returns nothing.
local test_hook = rawget(_G, "TOLLGATE_USAGE_TEST_HOOK")
if type(test_hook) == "table" then
  test_hook.json_decode = json_decode
  test_hook.json_string = json_string
  test_hook.is_object = is_object
  test_hook.is_array = is_array
  test_hook.NULL = NULL
  test_hook.rewrite_request_body = rewrite_request_body
end
