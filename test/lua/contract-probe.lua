-- Runs a usage filter's two entry points once each against recording mocks and prints one JSON object naming
-- every header, metadata namespace and metadata key the filter touched. test/contract/names.test.ts compares them
-- with src/contract, so a name changed in the Lua alone (or in the contract alone) fails there.
--
--   luajit test/lua/contract-probe.lua <usage.lua> <config JSON>
--
-- The config (from the contract) says which names the mocks answer to: {"authz_namespace", "model_header",
-- "stream_header", "stream_on", "authz": {key: value}}. A name the filter uses that the mocks do not know is
-- still recorded, so the test names it.

TOLLGATE_USAGE_TEST_HOOK = {}
dofile(arg[1])
local hook = TOLLGATE_USAGE_TEST_HOOK
local config = hook.json_decode(arg[2])
assert(hook.is_object(config), "config is not a JSON object")

local seen = { request_headers = {}, response_headers = {}, metadata_get = {}, metadata_set = {}, authz_read = {} }
local function add(list, v) list[#list + 1] = v end

local function headers(init, log)
  local map = {}
  for k, v in pairs(init) do map[k] = v end
  return {
    map = map,
    get = function(_, k) add(log, k); return map[k] end,
    replace = function(_, k, v) add(log, k); map[k] = v end,
    add = function(_, k, v) add(log, k); map[k] = v end,
    remove = function(_, k) add(log, k); map[k] = nil end,
  }
end

-- The ext_authz namespace as authz wrote it; every field the filter reads is recorded.
local backing = {}
for k, v in pairs(config.authz) do backing[k] = v end
local authz = setmetatable({}, { __index = function(_, k) add(seen.authz_read, k); return backing[k] end })

local function metadata()
  return {
    get = function(_, ns)
      add(seen.metadata_get, ns)
      if ns == config.authz_namespace then return authz end
      return nil
    end,
    set = function(_, ns, k) add(seen.metadata_set, { ns, k }) end,
  }
end

local function buffer(s)
  return {
    length = function() return #s end,
    getBytes = function(_, i, n) return s:sub(i + 1, i + n) end,
    setBytes = function(_, ns) s = ns end,
    text = function() return s end,
  }
end

local function handle(h, body, chunks)
  local meta = metadata()
  return {
    headers = function() return h end,
    body = function() return body end,
    bodyChunks = function()
      local i = 0
      return function()
        i = i + 1
        return chunks[i] and buffer(chunks[i]) or nil
      end
    end,
    streamInfo = function() return { dynamicMetadata = function() return meta end } end,
    logWarn = function() end,
    logInfo = function() end,
    logDebug = function() end,
  }
end

-- Request: an allowed stream, with the headers authz sets.
local request_body = buffer('{"model":"client-model","messages":[]}')
local request_headers = headers({
  [":method"] = "POST",
  ["content-type"] = "application/json",
  [config.model_header] = "provider-model",
  [config.stream_header] = config.stream_on,
}, seen.request_headers)
envoy_on_request(handle(request_headers, request_body, {}))

-- Response: a JSON body carrying the provider's usage.
local response_headers = headers({ [":status"] = "200", ["content-type"] = "application/json" }, seen.response_headers)
envoy_on_response(handle(response_headers, nil, { '{"usage":{"prompt_tokens":3,"completion_tokens":4}}' }))

local function encode(v)
  if type(v) == "string" then return hook.json_string(v) end
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "table" and v[1] ~= nil or next(v) == nil then
    local out = {}
    for i, x in ipairs(v) do out[i] = encode(x) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = hook.json_string(k) .. ":" .. encode(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

seen.rewritten_body = request_body.text()
seen.left_request_headers = {}
for k in pairs(request_headers.map) do add(seen.left_request_headers, k) end
table.sort(seen.left_request_headers)
print(encode(seen))
