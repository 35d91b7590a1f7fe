-- Runs envoy/usage.lua against a mock of the Envoy Lua handle API, for one shared test vector.
--
--   luajit test/lua/harness.lua <vector.json> <mode>
--
-- Usage vectors (test/vectors/usage): mode is
--   whole       the (cut) body as one chunk
--   bytes       one byte per chunk
--   all-splits  two chunks, split at every byte offset 0..n; one JSON line per split
--   reset       the whole body, then the stream is reset: envoy_on_response never resumes after its last chunk
-- Request-rewrite vectors (test/vectors/request-rewrite): mode is "request", or "request-unadmitted" (no ext_authz
-- decision in metadata, as when a client sends the internal headers itself).
-- Each run prints one JSON line: {"split":k,"usage":{...}} or {"body":...,"content_length":...,"headers":{...}}.
-- Must be run from the repository root (it loads envoy/usage.lua by relative path).

TOLLGATE_USAGE_TEST_HOOK = {}
dofile("envoy/usage.lua")
local usage = TOLLGATE_USAGE_TEST_HOOK
local decode, is_object, is_array, NULL = usage.json_decode, usage.is_object, usage.is_array, usage.NULL

local function encode(v)
  local t = type(v)
  if v == nil or v == NULL then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return usage.json_string(v) end
  if is_array(v) then
    local out = {}
    for i = 1, v.n do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = usage.json_string(k) .. ":" .. encode(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

-- Binary vector bodies (compressed ones) are stored as base64 in body_base64.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64_decode(s)
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64:find(s:sub(i, i), 1, true)
    if v then
      bits = bits * 64 + (v - 1)
      nbits = nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        local b = math.floor(bits / 2 ^ nbits)
        out[#out + 1] = string.char(b)
        bits = bits - b * 2 ^ nbits
      end
    end
  end
  return table.concat(out)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Envoy header maps are case-insensitive; values are strings.
local function mock_headers(init)
  local map = {}
  for k, v in pairs(init) do map[k:lower()] = v end
  return {
    map = map,
    get = function(_, k) return map[k:lower()] end,
    replace = function(_, k, v) map[k:lower()] = v end,
    add = function(_, k, v) map[k:lower()] = v end,
    remove = function(_, k) map[k:lower()] = nil end,
  }
end

local function mock_buffer(s)
  return {
    length = function() return #s end,
    getBytes = function(_, i, n) return s:sub(i + 1, i + n) end,
    setBytes = function(_, ns) s = ns end,
    text = function() return s end,
  }
end

local function mock_metadata(init)
  local store = init or {}
  return {
    store = store,
    get = function(_, ns) return store[ns] end,
    set = function(_, ns, k, v)
      store[ns] = store[ns] or {}
      store[ns][k] = v
    end,
  }
end

local RESET = {}

local function mock_handle(opts)
  local headers = mock_headers(opts.headers)
  local meta = mock_metadata(opts.metadata)
  local body = opts.body and mock_buffer(opts.body) or nil
  return {
    headers = function() return headers end,
    body = function() return body end,
    bodyChunks = function()
      local i = 0
      return function()
        i = i + 1
        local c = opts.chunks[i]
        if c == nil then
          if opts.reset then error(RESET) end
          return nil
        end
        return mock_buffer(c)
      end
    end,
    streamInfo = function() return { dynamicMetadata = function() return meta end } end,
    logWarn = function(_, msg) io.stderr:write("warn: ", msg, "\n") end,
    logInfo = function() end,
    logDebug = function() end,
    -- exposed to the harness only
    _headers = headers, _meta = meta, _body = body,
  }
end

local function run_response(vector, chunks, reset)
  local authz = { decision_id = "d-test", stream = vector.content_type == "text/event-stream" }
  if type(vector.prompt_tokens_estimate) == "number" then authz.prompt_tokens_estimate = vector.prompt_tokens_estimate end
  local h = mock_handle({
    headers = { [":status"] = tostring(vector.status), ["content-type"] = vector.content_type,
      ["content-encoding"] = type(vector.content_encoding) == "string" and vector.content_encoding or nil },
    metadata = { ["envoy.filters.http.ext_authz"] = authz },
    chunks = chunks,
    reset = reset,
  })
  local ok, err = pcall(envoy_on_response, h)
  if not ok and err ~= RESET then error(err) end
  if ok and reset then error("filter finished although the stream was reset") end
  return h._meta.store["tollgate.usage"]
end

local path, mode = arg[1], arg[2]
local vector = decode(read_file(path))
assert(is_object(vector), "vector is not a JSON object: " .. tostring(path))

if mode == "request" or mode == "request-unadmitted" then
  local headers = { [":method"] = "POST", [":path"] = "/v1/chat/completions", ["content-type"] = "application/json",
    ["content-length"] = tostring(#vector.body), ["x-tollgate-upstream-model"] = vector.upstream_model }
  if vector.stream == true then headers["x-tollgate-stream"] = "1" end
  local h = mock_handle({ headers = headers, body = vector.body, chunks = {},
    metadata = mode == "request" and { ["envoy.filters.http.ext_authz"] = { decision_id = "d-test", stream = vector.stream == true } }
      or {} })
  envoy_on_request(h)
  print(encode({ body = h._body.text(), content_length = h._headers:get("content-length"), headers = {
    upstream_model = h._headers:get("x-tollgate-upstream-model") or NULL,
    stream = h._headers:get("x-tollgate-stream") or NULL,
  } }))
  return
end

local body = vector.body
if type(vector.body_base64) == "string" then body = base64_decode(vector.body_base64) end
if type(vector.cut_at) == "number" then body = body:sub(1, vector.cut_at) end

if mode == "whole" or mode == "reset" then
  print(encode({ split = NULL, usage = run_response(vector, { body }, mode == "reset") }))
elseif mode == "bytes" then
  local chunks = {}
  for i = 1, #body do chunks[i] = body:sub(i, i) end
  print(encode({ split = NULL, usage = run_response(vector, chunks, false) }))
elseif mode == "all-splits" then
  local out = {}
  for k = 0, #body do
    out[#out + 1] = encode({ split = k, usage = run_response(vector, { body:sub(1, k), body:sub(k + 1) }, false) })
  end
  print(table.concat(out, "\n"))
else
  error("unknown mode: " .. tostring(mode))
end
