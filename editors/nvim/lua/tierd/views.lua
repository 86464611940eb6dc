-- The plugin's buffers, all scratch (never files):
--   tierd://task/<id>   a task's view (Markdown), kept current by the live events;
--   tierd://tasks       the task list (:Tierd list), <CR> opens the task under the cursor;
--   tierd://diff/<id>   a code task's merged change (filetype diff), from task/diff.

local client = require("tierd.client")
local config = require("tierd.config")
local render = require("tierd.render")
local util = require("tierd.util")
local uv = vim.uv or vim.loop

local M = {}

local TASK_PREFIX = "tierd://task/"
local LIST_NAME = "tierd://tasks"

local function map_common(buf, reload)
  local opts = { buffer = buf, nowait = true, silent = true }
  vim.keymap.set("n", "q", function()
    pcall(vim.cmd, "close") -- the last window stays
  end, opts)
  vim.keymap.set("n", "r", reload, opts)
end

--- Call `method`, then `show(result)`; then cb(nil, what show returned) when cb is given.
--- An error goes to cb when given (the caller's to tell), else it is shown.
local function call_then(method, params, cb, show)
  client.rpc(method, params, function(err, result)
    if err then
      if cb then
        return cb(err)
      end
      return util.error(client.describe(err))
    end
    local shown = show(result)
    if cb then
      cb(nil, shown)
    end
  end)
end

-- --- a task's view ---------------------------------------------------------------------------

local function fill_task(buf, task)
  if not vim.api.nvim_buf_is_valid(buf) then
    return
  end
  vim.b[buf].tierd_task_id = task.id
  vim.b[buf].tierd_task_state = task.state
  util.set_lines(buf, render.task(task))
  util.fire("TierdTask", { id = task.id, state = task.state, buf = buf })
end

--- Load the view of the task `buf` is named after (BufReadCmd of tierd://task/*, and reloads).
function M.load_task(buf)
  local id = vim.api.nvim_buf_get_name(buf):sub(#TASK_PREFIX + 1)
  util.make_scratch(buf, "markdown")
  vim.bo[buf].buflisted = false
  vim.b[buf].tierd_task_id = id
  map_common(buf, function()
    M.load_task(buf)
  end)
  if vim.api.nvim_buf_line_count(buf) <= 1 then
    util.set_lines(buf, { "loading task " .. id .. " …" })
  end
  client.rpc("task/get", { task_id = id }, function(err, task)
    if err then
      return util.set_lines(buf, { "tierd: " .. client.describe(err) })
    end
    fill_task(buf, task)
  end)
end

--- :Tierd show: the task's view in a split (its full id found first: `id` may be a prefix).
--- cb(err, task) when given (then errors are the caller's to tell), else errors are shown.
function M.open_task(id, cb)
  call_then("task/get", { task_id = id }, cb, function(task)
    local buf = vim.fn.bufadd(TASK_PREFIX .. task.id)
    vim.fn.bufload(buf) -- BufReadCmd: made scratch, mapped
    fill_task(buf, task)
    util.show(buf, config.get("split"))
    return task
  end)
end

-- --- the task list -------------------------------------------------------------------------

local listed = {} -- the ids of the last list, for completion

function M.known_ids()
  return listed
end

local function fill_list(buf, states, cb)
  local params = { limit = 100 }
  if states and #states > 0 then
    params.state = states
  end
  call_then("task/list", params, cb, function(page)
    local tasks = page.tasks or {}
    listed = {}
    for _, t in ipairs(tasks) do
      listed[#listed + 1] = t.id
    end
    util.set_lines(buf, render.list(tasks, states))
    return tasks
  end)
end

--- :Tierd list [state ...]: the list in a split, once the daemon answered; cb(err, tasks).
function M.open_list(states, cb)
  local buf = util.scratch(LIST_NAME, "tierdlist")
  vim.bo[buf].buflisted = false
  vim.b[buf].tierd_list_states = states or {}
  map_common(buf, function()
    fill_list(buf, vim.b[buf].tierd_list_states)
  end)
  vim.keymap.set("n", "<CR>", function()
    local id = M.id_on_line(buf)
    if id then
      M.open_task(id)
    end
  end, { buffer = buf, silent = true })
  fill_list(buf, states, function(err, tasks)
    if not err then
      util.show(buf, config.get("split"))
    end
    cb(err, tasks)
  end)
end

--- The task id at the start of the cursor's line in the list, if any.
function M.id_on_line(buf)
  if vim.api.nvim_get_current_buf() ~= buf then
    return nil
  end
  return vim.api.nvim_get_current_line():match("^(t%x+)%s")
end

-- --- a code task's diff ----------------------------------------------------------------------

--- :Tierd diff: the merged change in a split, filetype diff.
function M.open_diff(id, cb)
  call_then("task/diff", { task_id = id }, cb, function(diff)
    local buf = util.scratch("tierd://diff/" .. diff.task_id, "diff")
    vim.bo[buf].buflisted = false
    vim.b[buf].tierd_task_id = diff.task_id
    map_common(buf, function()
      M.open_diff(diff.task_id)
    end)
    local lines = util.split_lines(diff.patch)
    if #lines == 0 then
      lines = { "# no changes" }
    end
    util.set_lines(buf, lines)
    util.show(buf, config.get("diff_split"))
    local files = #(diff.files or {})
    local cut = util.val(diff.truncated) and " (the patch is cut: too long)" or ""
    local text = "task %s: %d file(s) changed on %s%s"
    util.notify(string.format(text, diff.task_id, files, diff.branch, cut))
    return diff
  end)
end

-- --- live ------------------------------------------------------------------------------------

local pending = {}

local function reload_soon(key, fn)
  local timer = pending[key]
  if not timer then
    timer = uv.new_timer()
    pending[key] = timer
  end
  timer:stop()
  timer:start(200, 0, function()
    vim.schedule(fn)
  end)
end

--- The live feed's events: reload the views they concern (loaded buffers only).
function M.on_event(ev)
  if ev.task_id then
    local buf = util.find_buf(TASK_PREFIX .. ev.task_id)
    if buf and vim.api.nvim_buf_is_loaded(buf) then
      reload_soon(buf, function()
        M.load_task(buf)
      end)
    end
  end
  if ev.type == "task.state" or ev.type == "task.deleted" or ev.type == "live.connected" then
    local list = util.find_buf(LIST_NAME)
    if list and vim.api.nvim_buf_is_loaded(list) and #vim.fn.win_findbuf(list) > 0 then
      reload_soon("list", function()
        fill_list(list, vim.b[list].tierd_list_states)
      end)
    end
  end
end

return M
