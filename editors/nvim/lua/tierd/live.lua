-- Live updates: one Server-Sent Event stream of all the daemon's events (GET /v1/events),
-- followed in the background and handed to listeners (the inbox, open task views, the task
-- list). Nothing waits: libuv reads the socket, the main loop gets each event.
--
-- /v1/events replays from the start unless told where to resume, so the first connection
-- resumes after the newest task's last event (its stored events, replayed and closed); each
-- reconnect resumes with Last-Event-ID after the last event seen, so nothing is missed across
-- drops and daemon restarts. A daemon of another instance (a new home) starts over.

local client = require("tierd.client")
local util = require("tierd.util")
local uv = vim.uv or vim.loop

local M = {}

local listeners = {}
local state = {
  running = false,
  status = "off", -- off | connecting | live | reconnecting
  handle = nil,
  last_id = nil,
  instance = nil,
  failures = 0,
  timer = nil,
  finding = false,
  error = nil,
}

--- Call fn(ev) for every event; ev.type "live.connected" after each (re)connection.
function M.on(fn)
  listeners[#listeners + 1] = fn
end

--- "off", "connecting", "live" or "reconnecting", and the last reason it is not live.
function M.status()
  return state.status, state.error
end

local function dispatch(ev)
  for _, fn in ipairs(listeners) do
    local ok, problem = pcall(fn, ev)
    if not ok then
      util.error("a live update failed: " .. tostring(problem))
    end
  end
end

local connect

local function retry(err)
  state.status = "reconnecting"
  state.failures = state.failures + 1
  local wait = math.min(10000, 250 * 2 ^ math.min(state.failures, 6))
  if err and err.retry_after then
    wait = math.max(wait, err.retry_after * 1000)
  end
  state.error = err and err.message or nil
  if not state.timer then
    state.timer = uv.new_timer()
  end
  state.timer:stop()
  state.timer:start(wait, 0, function()
    vim.schedule(function()
      if state.running then
        connect()
      end
    end)
  end)
end

--- Where to resume on a first connection: after the newest task's last stored event.
local function find_start(cb)
  client.rpc("task/list", { limit = 1 }, function(err, page)
    if err then
      return cb(err)
    end
    local newest = (page.tasks or {})[1]
    if not newest then
      return cb(nil, 0)
    end
    local last = 0
    client.events(
      "/v1/tasks/" .. newest.id .. "/events?follow=false",
      nil,
      function(ev)
        last = math.max(last, ev.id or 0)
      end,
      function(e)
        cb(e, last)
      end
    )
  end)
end

local function follow()
  state.handle = client.events("/v1/events", state.last_id, function(ev)
    if ev.id then
      state.last_id = math.max(state.last_id or 0, ev.id)
    end
    dispatch(ev)
  end, function(err)
    state.handle = nil
    if state.running then
      retry(err)
    end
  end, function(info)
    if state.instance and state.instance ~= info.instance_id then
      -- Another daemon (another store): its ids are not ours. Start over from its newest.
      state.instance = nil
      state.last_id = nil
      if state.handle then
        state.handle:close()
        state.handle = nil
      end
      return connect()
    end
    state.instance = info.instance_id
    state.status = "live"
    state.failures = 0
    state.error = nil
    dispatch({ type = "live.connected" })
  end)
end

connect = function()
  if not state.running or state.handle or state.finding then
    return
  end
  state.status = state.status == "off" and "connecting" or state.status
  if state.last_id then
    return follow()
  end
  state.finding = true
  find_start(function(err, last)
    state.finding = false
    if not state.running then
      return
    end
    if err then
      return retry(err)
    end
    state.last_id = last
    follow()
  end)
end

--- Start following (once; later calls do nothing).
function M.start()
  if state.running then
    return
  end
  state.running = true
  state.failures = 0
  connect()
end

function M.stop()
  state.running = false
  state.status = "off"
  if state.timer then
    state.timer:stop()
  end
  if state.handle then
    state.handle:close()
    state.handle = nil
  end
end

--- Reconnect now (e.g. after a command found the daemon again), not at the next retry.
function M.poke()
  if state.running and not state.handle and state.status == "reconnecting" then
    if state.timer then
      state.timer:stop()
    end
    connect()
  end
end

return M
