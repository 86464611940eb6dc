-- The daemon's API: JSON-RPC calls (POST /rpc) and Server-Sent Event streams, each with the
-- bearer token of the daemon discovery.lua found and verified. Asynchronous only: every
-- function takes a callback, run on the main loop; nothing here waits.

local config = require("tierd.config")
local discovery = require("tierd.discovery")
local http = require("tierd.http")
local util = require("tierd.util")

local M = {}
local next_id = 0

local function timeout_ms()
  return math.floor((config.get("timeout_s") or 30) * 1000)
end

--- An error for a non-200 answer: the guard's and REST's bodies are {"error": {...}}.
local function http_error(status, body)
  local ok, doc = pcall(vim.json.decode, body or "")
  if ok and type(doc) == "table" and type(doc.error) == "table" then
    local e = doc.error
    local message = util.val(e.message)
    return {
      kind = "api",
      code = tonumber(util.val(e.code)) or status,
      message = (message and message ~= "") and tostring(message) or ("HTTP " .. status),
      data = util.val(e.data),
    }
  end
  local text = vim.trim(body or "")
  return {
    kind = "api",
    code = status,
    message = "HTTP " .. status .. (text ~= "" and (": " .. text:sub(1, 300)) or ""),
  }
end

--- A transport failure after discovery, worded as the CLI words it.
local function gone(info, err)
  discovery.forget()
  if err.kind == "timeout" then
    return {
      kind = "no_daemon",
      message = string.format(
        "the tierd daemon at %s did not answer within %gs; it may be overloaded or stuck",
        info.url,
        timeout_ms() / 1000
      ),
    }
  elseif err.kind == "connect" then
    return discovery.not_running("nothing answers at " .. info.url)
  elseif err.kind == "protocol" then
    return discovery.not_running(string.format("the server at %s does not speak HTTP", info.url))
  end
  return discovery.not_running("the connection to " .. info.url .. " was closed")
end

local function auth(info, extra)
  local headers = { Authorization = "Bearer " .. info.token }
  for k, v in pairs(extra or {}) do
    headers[k] = v
  end
  return headers
end

--- Call `method` with `params`; cb(err, result). err: {kind = "no_daemon"|"api", message,
--- code, data}.
function M.rpc(method, params, cb)
  discovery.discover(function(derr, info)
    if derr then
      return cb(derr)
    end
    next_id = next_id + 1
    local body = vim.json.encode({
      jsonrpc = "2.0",
      id = next_id,
      method = method,
      params = (params and next(params)) and params or vim.empty_dict(),
    })
    http.request({
      url = info.url,
      method = "POST",
      path = "/rpc",
      headers = auth(info, { ["Content-Type"] = "application/json", Accept = "application/json" }),
      body = body,
      timeout_ms = timeout_ms(),
    }, function(err, resp)
      if err then
        return cb(gone(info, err))
      end
      if resp.status ~= 200 then
        return cb(http_error(resp.status, resp.body))
      end
      local ok, doc = pcall(vim.json.decode, resp.body)
      if not ok or type(doc) ~= "table" then
        return cb({ kind = "api", code = resp.status, message = "not a JSON-RPC answer" })
      end
      if type(doc.error) == "table" then
        local e = doc.error
        return cb({
          kind = "api",
          code = util.val(e.code),
          message = tostring(util.val(e.message) or "error"),
          data = util.val(e.data),
        })
      end
      cb(nil, doc.result)
    end)
  end, timeout_ms())
end

--- What to tell the user about `err`: its message, and the candidates of an ambiguous id.
function M.describe(err)
  local text = err.message or tostring(err)
  local data = type(err.data) == "table" and err.data or {}
  local candidates = util.val(data.candidates)
  if type(candidates) == "table" and #candidates > 0 then
    local ids = {}
    for _, c in ipairs(candidates) do
      ids[#ids + 1] = type(c) == "table" and tostring(util.val(c.id) or "?") or tostring(c)
    end
    text = text .. " (" .. table.concat(ids, ", ") .. ")"
  end
  return text
end

-- --- Server-Sent Events ---------------------------------------------------------------------

--- A text/event-stream parser (the HTML standard's rules): push(text) calls
--- on_message({id, event, data}) for each complete message.
function M.sse_parser(on_message)
  local buffer, data, event, id = "", {}, nil, nil
  local pending_cr = false
  local function line(l)
    if l == "" then
      if #data > 0 then
        on_message({ id = id, event = event or "message", data = table.concat(data, "\n") })
      end
      data, event = {}, nil
      return
    end
    if l:sub(1, 1) == ":" then
      return -- a keep-alive comment
    end
    local field, value = l:match("^([^:]*):?(.*)$")
    value = value:gsub("^ ", "", 1)
    if field == "data" then
      data[#data + 1] = value
    elseif field == "event" then
      event = value
    elseif field == "id" then
      id = value
    end
  end
  return function(text)
    local chunk = (pending_cr and "\r" or "") .. text
    pending_cr = chunk:sub(-1) == "\r"
    if pending_cr then
      chunk = chunk:sub(1, -2)
    end
    buffer = buffer .. chunk
    while true do
      local at = buffer:find("[\r\n]")
      if not at then
        break
      end
      -- "\r\n" is one line end (a chunk never ends between the two: see pending_cr)
      local stop = buffer:sub(at, at + 1) == "\r\n" and at + 1 or at
      line(buffer:sub(1, at - 1))
      buffer = buffer:sub(stop + 1)
    end
  end
end

--- Open an event stream at `path` (/v1/events or /v1/tasks/{id}/events); on_event(ev) for
--- each event (the decoded JSON, with its id); done(err) when the stream ends (err nil: the
--- daemon closed it, e.g. a finished task's replay); on_open(info) (optional) once the
--- daemon `info` accepted it. Returns a handle with :close().
function M.events(path, last_id, on_event, done, on_open)
  local handle = { closed = false }
  discovery.discover(function(derr, info)
    if derr then
      return done(derr)
    end
    if handle.closed then
      return
    end
    local headers = auth(info, { Accept = "text/event-stream", ["Cache-Control"] = "no-cache" })
    if last_id and last_id > 0 then
      headers["Last-Event-ID"] = tostring(last_id)
    end
    local parse = M.sse_parser(function(msg)
      local ok, ev = pcall(vim.json.decode, msg.data)
      if ok and type(ev) == "table" then
        ev.id = tonumber(util.val(ev.id)) or tonumber(msg.id)
        on_event(ev)
      end
    end)
    handle.request = http.request({
      url = info.url,
      path = path,
      headers = headers,
      on_data = parse,
      on_open = on_open and function()
        on_open(info)
      end,
      idle_timeout_ms = 35000, -- the daemon pings every 10 s
    }, function(err, resp)
      if err then
        return done(gone(info, err))
      end
      if resp.status ~= 200 then
        local e = http_error(resp.status, resp.body)
        e.retry_after = tonumber((resp.headers or {})["retry-after"] or "")
        return done(e)
      end
      done(nil)
    end)
  end, timeout_ms())
  function handle:close()
    self.closed = true
    if self.request then
      self.request:close()
    end
  end
  return handle
end

return M
