-- :Tierd {subcommand} [args]: parsing, the task each one acts on, and completion.
--
-- Every subcommand is asynchronous: it returns at once, and tells the outcome with a message.
-- When it is done it fires `User TierdDone` with data {command, ok, error, result}.

local client = require("tierd.client")
local config = require("tierd.config")
local inbox = require("tierd.inbox")
local live = require("tierd.live")
local util = require("tierd.util")
local views = require("tierd.views")

local M = {}

M.APPLY = { "merge", "branch", "patch" }
M.STATES = {
  "queued",
  "planning",
  "running",
  "reviewing",
  "merging",
  "input_required",
  "awaiting_approval",
  "completed",
  "failed",
  "canceled",
}
M.SUBMIT_FLAGS = { "--approval", "--no-approval", "--base=", "--uncommitted" }

--- Report the end of `command`: an error is shown; either way `User TierdDone` fires.
local function done(command, err, result)
  if err then
    util.error(type(err) == "table" and client.describe(err) or tostring(err))
  end
  util.fire("TierdDone", {
    command = command,
    ok = err == nil,
    error = err and (type(err) == "table" and client.describe(err) or tostring(err)) or nil,
    result = result,
  })
end

--- A task id as given on the command line: "@last" or a unique prefix (t + hex, 4+ chars).
function M.is_id(word)
  return word == "@last" or (word ~= nil and word:match("^t%x%x%x+$") ~= nil)
end

--- The task the cursor is on: a task view or diff, the task list, or our quickfix entry.
function M.context_id()
  local buf = vim.api.nvim_get_current_buf()
  local id = vim.b[buf].tierd_task_id
  if id then
    return id
  end
  if vim.bo[buf].buftype == "quickfix" then
    local entry = vim.fn.getqflist({ idx = vim.fn.line("."), items = 1 }).items
    local item = entry and entry[1] or {}
    local data = item.user_data
    if type(data) == "table" and data.tierd_task then
      return data.tierd_task
    end
    if item.module and M.is_id(item.module) then
      return item.module -- our entries name their task there too (where user_data is not kept)
    end
  end
  return views.id_on_line(buf)
end

local WANT = {
  answer = "input_required",
  approve = "awaiting_approval",
  diff = "awaiting_approval",
}

--- The task a subcommand acts on: the id given, else the one under the cursor, else the one
--- task waiting for this kind of step (`kind`: answer, approve, diff), else @last.
function M.pick(kind, given, cb)
  if given then
    return cb(given)
  end
  local here = M.context_id()
  if here then
    return cb(here)
  end
  local want = WANT[kind]
  if not want then
    return cb("@last")
  end
  inbox.refresh(false, function(err, tasks)
    if err then
      return cb(nil, err)
    end
    local found = {}
    for _, t in ipairs(tasks) do
      if t.state == want then
        found[#found + 1] = t.id
      end
    end
    if #found == 1 then
      return cb(found[1])
    elseif #found > 1 then
      local which = table.concat(found, ", ")
      return cb(nil, string.format("%d tasks wait for you: give an id (%s)", #found, which))
    elseif kind == "diff" then
      return cb("@last")
    end
    cb(nil, kind == "answer" and "no task asks you a question" or "no task waits for your approval")
  end)
end

--- Split args into (task id or nil, choice among `choices` or nil, the other words).
local function split_args(args, choices)
  local id, choice, rest = nil, nil, {}
  for i, a in ipairs(args) do
    if i == 1 and M.is_id(a) then
      id = a
    elseif choices and not choice and #rest == 0 and vim.tbl_contains(choices, a) then
      choice = a
    else
      rest[#rest + 1] = a
    end
  end
  return id, choice, table.concat(rest, " ")
end

local function after_change(id)
  inbox.refresh_soon()
  views.on_event({ type = "task.state", task_id = id })
end

-- --- the subcommands -------------------------------------------------------------------------

local H = {}

H.submit = function(cmd)
  require("tierd.submit").run(cmd, function(err, result)
    if result then
      after_change(result.task_id)
    end
    done("submit", err, result)
  end)
end

H.list = function(cmd)
  for _, s in ipairs(cmd.args) do
    if not vim.tbl_contains(M.STATES, s) then
      local known = table.concat(M.STATES, ", ")
      local text = string.format("list: unknown state %s (one of %s)", vim.inspect(s), known)
      return done("list", text)
    end
  end
  views.open_list(cmd.args, function(err, tasks)
    done("list", err, tasks and { count = #tasks })
  end)
end

H.inbox = function()
  inbox.open(function(err, tasks)
    done("inbox", err, tasks and { count = #tasks })
  end)
end

H.show = function(cmd)
  M.pick(nil, cmd.args[1], function(id)
    views.open_task(id, function(err, task)
      done("show", err, task and { task_id = task.id, state = task.state })
    end)
  end)
end

H.answer = function(cmd)
  local given, _, text = split_args(cmd.args)
  M.pick("answer", given, function(id, perr)
    if perr then
      return done("answer", perr)
    end
    require("tierd.answer").run(id, text, function(err, result)
      if result then
        after_change(result.task_id)
      end
      done("answer", err, result)
    end)
  end)
end

local function approve(command, cmd, decision, default_apply)
  local given, choice, rest = split_args(cmd.args, decision == "approve" and M.APPLY or nil)
  if rest ~= "" and decision == "approve" then
    local choices = table.concat(M.APPLY, ", ")
    local text = "%s: unexpected %s (apply choices: %s)"
    text = string.format(text, command, vim.inspect(rest), choices)
    return done(command, text)
  end
  M.pick("approve", given, function(id, perr)
    if perr then
      return done(command, perr)
    end
    local function send(comment)
      local params = { task_id = id, decision = decision }
      params.apply = choice or default_apply
      params.comment = comment
      client.rpc("task/approve", params, function(err, out)
        if not err then
          require("tierd.answer").tell_decided(out)
          after_change(out.task_id)
        end
        done(command, err, out)
      end)
    end
    if decision == "approve" then
      return send(nil)
    end
    if rest ~= "" then
      return send(rest)
    end
    vim.ui.input({ prompt = "What should change? " }, function(comment)
      if not comment or vim.trim(comment) == "" then
        return done(command, "reject: a comment saying what to change is needed; nothing sent")
      end
      send(comment)
    end)
  end)
end

H.approve = function(cmd)
  approve("approve", cmd, "approve", nil)
end

H.apply = function(cmd)
  approve("apply", cmd, "approve", config.get("apply"))
end

H.reject = function(cmd)
  approve("reject", cmd, "reject", nil)
end

H.cancel = function(cmd)
  M.pick(nil, cmd.args[1], function(id)
    client.rpc("task/cancel", { task_id = id }, function(err, out)
      if not err then
        util.notify(string.format("canceled %s", out.task_id))
        after_change(out.task_id)
      end
      done("cancel", err, out)
    end)
  end)
end

H.diff = function(cmd)
  M.pick("diff", cmd.args[1], function(id, perr)
    if perr then
      return done("diff", perr)
    end
    views.open_diff(id, function(err, diff)
      done("diff", err, diff and { task_id = diff.task_id, files = #diff.files })
    end)
  end)
end

M.handlers = H
M.NAMES = {
  "submit",
  "submit!",
  "list",
  "inbox",
  "show",
  "answer",
  "approve",
  "reject",
  "cancel",
  "diff",
  "apply",
}

--- The :Tierd command (opts as nvim_create_user_command gives them).
function M.run(opts)
  local args = vim.deepcopy(opts.fargs or {})
  local name = table.remove(args, 1)
  if not name then
    return util.notify("usage: :Tierd {" .. table.concat(M.NAMES, "|") .. "} [args]")
  end
  local bang = opts.bang
  if name == "submit!" then
    name, bang = "submit", true
  end
  local handler = H[name]
  if not handler then
    local names = table.concat(M.NAMES, ", ")
    return done(name, string.format("unknown subcommand %s (%s)", vim.inspect(name), names))
  end
  if config.get("live") then
    live.start()
    live.poke()
  end
  handler({ args = args, bang = bang, range = opts.range, line1 = opts.line1, line2 = opts.line2 })
end

-- --- completion ------------------------------------------------------------------------------

local function ids()
  local out, seen = { "@last" }, {}
  for _, t in ipairs(inbox.tasks()) do
    if not seen[t.id] then
      seen[t.id] = true
      out[#out + 1] = t.id
    end
  end
  for _, id in ipairs(views.known_ids()) do
    if not seen[id] then
      seen[id] = true
      out[#out + 1] = id
    end
  end
  return out
end

local COMPLETE = {
  list = function()
    return M.STATES
  end,
  submit = function()
    return M.SUBMIT_FLAGS
  end,
  approve = function(n)
    return n == 1 and vim.list_extend(ids(), M.APPLY) or M.APPLY
  end,
}
COMPLETE["submit!"] = COMPLETE.submit
COMPLETE.apply = COMPLETE.approve

function M.complete(arglead, cmdline, _)
  local words = vim.split(vim.trim(cmdline:gsub("^%S+", "", 1)), "%s+", { trimempty = true })
  if #words == 0 or (#words == 1 and arglead ~= "") then
    return vim.tbl_filter(function(n)
      return vim.startswith(n, arglead)
    end, M.NAMES)
  end
  local n = #words - (arglead ~= "" and 1 or 0) -- the argument being completed, 1-based
  local fn = COMPLETE[words[1]]
  local candidates
  if fn then
    candidates = fn(n)
  elseif n == 1 and words[1] ~= "inbox" then
    candidates = ids()
  else
    candidates = {}
  end
  return vim.tbl_filter(function(c)
    return vim.startswith(c, arglead)
  end, candidates)
end

return M
