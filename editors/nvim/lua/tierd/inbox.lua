-- The inbox: tasks waiting for you (input_required: questions to answer; awaiting_approval: a
-- result to approve), as a quickfix list titled "tierd: waiting for you". Each entry opens
-- the task's view (tierd://task/<id>). The list is refreshed on the daemon's events (live.lua)
-- and after each command; the user's other quickfix lists are never touched.

local client = require("tierd.client")
local config = require("tierd.config")
local util = require("tierd.util")
local uv = vim.uv or vim.loop

local M = {}

M.TITLE = "tierd: waiting for you"
M.WAITING = { "input_required", "awaiting_approval" }

local state = {
  qf_id = nil,
  tasks = {}, -- the waiting tasks of the last refresh (task/list summaries)
  seen = {}, -- "<id> <state>" -> true: waiting tasks already announced
  questions = {}, -- id -> {updated_at, open = {question views}}
  busy = false,
  again = false,
  force = false,
  waiters = {}, -- callbacks of refreshes asked for (each answered by a run that began after)
  timer = nil,
}

--- The waiting tasks as last seen: {id, state, goal, repo, ...}.
function M.tasks()
  return state.tasks
end

--- The open questions of a waiting task as last seen (may be empty).
function M.open_questions(id)
  return (state.questions[id] or {}).open or {}
end

--- The open questions of the input_required tasks whose questions are not known yet.
local function fetch_questions(tasks, cb)
  local pending = 1
  local function one_done()
    pending = pending - 1
    if pending == 0 then
      cb()
    end
  end
  for _, t in ipairs(tasks) do
    local known = state.questions[t.id]
    if t.state == "input_required" and not (known and known.updated_at == t.updated_at) then
      pending = pending + 1
      client.rpc("task/get", { task_id = t.id }, function(err, task)
        if not err then
          state.questions[t.id] = { updated_at = t.updated_at, open = util.open_questions(task) }
        end
        one_done()
      end)
    end
  end
  one_done()
end

local function item(t)
  local goal = util.line(t.goal, 60)
  local text
  if t.state == "input_required" then
    local open = M.open_questions(t.id)
    local first = open[1] and util.line(open[1].question, 80) or "questions to answer"
    local more = #open > 1 and string.format(" (+%d more)", #open - 1) or ""
    text = string.format("[answer]  %s: %s%s", goal, first, more)
  else
    local repo = util.val(t.repo)
    local code = repo and (" (code in " .. vim.fn.fnamemodify(repo, ":t") .. ")") or ""
    text = string.format("[approve] %s: the result waits for your approval%s", goal, code)
  end
  return {
    filename = "tierd://task/" .. t.id,
    module = t.id,
    lnum = 1,
    text = text,
    user_data = { tierd_task = t.id, state = t.state },
  }
end

local function our_list_exists()
  return state.qf_id ~= nil and vim.fn.getqflist({ id = state.qf_id }).id == state.qf_id
end

local function announce(tasks)
  local new, seen = {}, {}
  for _, t in ipairs(tasks) do
    local key = t.id .. " " .. t.state
    seen[key] = true
    if not state.seen[key] then
      new[#new + 1] = t
    end
  end
  state.seen = seen -- a task that waits again later is announced again
  if #new == 0 or not config.get("notify_waiting") then
    return #new
  end
  local lines = {}
  for i, t in ipairs(new) do
    if i > 3 then
      lines[#lines + 1] = string.format("and %d more (:Tierd inbox)", #new - 3)
      break
    end
    local what = t.state == "input_required" and "asks you a question" or "awaits your approval"
    lines[#lines + 1] = string.format("task %s %s: %s", t.id, what, util.line(t.goal, 60))
  end
  util.notify(table.concat(lines, "\n"), vim.log.levels.WARN)
  return #new
end

--- Put `tasks` in our quickfix list: replaced in place when it exists, made (at the end of
--- the stack) when there is something to show or `force`.
local function apply(tasks, force)
  local items = {}
  for _, t in ipairs(tasks) do
    items[#items + 1] = item(t)
  end
  if our_list_exists() then
    vim.fn.setqflist({}, "r", { id = state.qf_id, title = M.TITLE, items = items })
  elseif #items > 0 or force then
    vim.fn.setqflist({}, " ", { title = M.TITLE, items = items, context = { tierd = true } })
    state.qf_id = vim.fn.getqflist({ id = 0 }).id
  end
end

local function run(force, cb)
  if cb then
    state.waiters[#state.waiters + 1] = cb
  end
  state.force = state.force or force
  if state.busy then
    state.again = true -- one more run once this one is done, for what came meanwhile
    return
  end
  state.busy, state.again = true, false
  local mine, forced = state.waiters, state.force
  state.waiters, state.force = {}, false
  local function finish(err, tasks)
    state.busy = false
    for _, fn in ipairs(mine) do
      fn(err, tasks)
    end
    if state.again then
      run(false)
    end
  end
  client.rpc("task/list", { state = M.WAITING, limit = 100 }, function(err, page)
    if err then
      return finish(err)
    end
    local tasks = page.tasks or {}
    fetch_questions(tasks, function()
      state.tasks = tasks
      apply(tasks, forced)
      if announce(tasks) > 0 and config.get("open_quickfix") then
        M.open_window()
      end
      util.fire("TierdInbox", { count = #tasks })
      finish(nil, tasks)
    end)
  end)
end

--- Refresh now; cb(err, tasks) when done. `force`: make the list even when it is empty.
function M.refresh(force, cb)
  run(force, cb)
end

--- Refresh soon: many events in a burst make one refresh.
function M.refresh_soon()
  if not state.timer then
    state.timer = uv.new_timer()
  end
  state.timer:stop()
  state.timer:start(150, 0, function()
    vim.schedule(function()
      run(false)
    end)
  end)
end

function M.open_window()
  if not our_list_exists() then
    return
  end
  local nr = vim.fn.getqflist({ id = state.qf_id, nr = 0 }).nr
  local current = vim.fn.getqflist({ nr = 0 }).nr
  if nr ~= current then
    vim.cmd(string.format("silent %dchistory", nr))
  end
  vim.cmd("botright copen")
end

--- :Tierd inbox: refresh, make the list even when empty, and open the quickfix window.
--- cb(err, tasks) once done.
function M.open(cb)
  run(true, function(err, tasks)
    if not err then
      M.open_window()
      if #state.tasks == 0 then
        util.notify("no task waits for you")
      end
    end
    cb(err, tasks)
  end)
end

--- The live feed's events: a task's change of state (or a reconnection) refreshes the list.
local TRIGGERS = {
  ["task.state"] = true,
  ["task.deleted"] = true,
  ["task.answered"] = true,
  attention = true, -- new questions, or a result to approve
  ["live.connected"] = true,
}

function M.on_event(ev)
  if TRIGGERS[ev.type] then
    if ev.task_id and ev.type ~= "task.state" then
      state.questions[ev.task_id] = nil -- its questions changed: fetch them again
    end
    M.refresh_soon()
  end
end

return M
