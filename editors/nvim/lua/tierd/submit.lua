-- :Tierd submit [flags] [goal]  and  :Tierd submit! (a code task on the current buffer's
-- repository). The goal comes from the arguments, else the selection (a range), else a
-- prompt; with both, the selection goes along as the task's context.
--
-- Flags (before the goal): --approval (the result waits for your approval), --no-approval,
-- --base=REF and --uncommitted (code tasks: start from REF, or from HEAD plus your uncommitted
-- changes); "--" ends them.

local client = require("tierd.client")
local config = require("tierd.config")
local util = require("tierd.util")
local uv = vim.uv or vim.loop

local M = {}

M.FLAGS = { "--approval", "--no-approval", "--base=REF", "--uncommitted" }

--- (flags, goal words): the leading --flags and what follows.
function M.parse(args)
  local flags, i = {}, 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      i = i + 1
      break
    elseif a == "--approval" then
      flags.approval = "required"
    elseif a == "--no-approval" then
      flags.approval = "none"
    elseif a == "--uncommitted" then
      flags.include_uncommitted = true
    elseif a:match("^%-%-base=.+") then
      flags.base = a:sub(8)
    elseif a:sub(1, 2) == "--" then
      return nil, "submit: unknown flag " .. a .. " (" .. table.concat(M.FLAGS, ", ") .. ")"
    else
      break
    end
    i = i + 1
  end
  return flags, table.concat(vim.list_slice(args, i), " ")
end

--- The selected text of lines line1..line2 of the current buffer (a charwise visual
--- selection on those lines is cut to its columns).
function M.selection(line1, line2)
  local lines = vim.api.nvim_buf_get_lines(0, line1 - 1, line2, false)
  local from, to = vim.fn.getpos("'<"), vim.fn.getpos("'>")
  if vim.fn.visualmode() == "v" and from[2] == line1 and to[2] == line2 and #lines > 0 then
    lines[#lines] = lines[#lines]:sub(1, to[3])
    lines[1] = lines[1]:sub(from[3])
  end
  return table.concat(lines, "\n")
end

--- The git work tree of the current buffer's file (else of the working directory), or nil.
function M.git_root()
  local name = vim.api.nvim_buf_get_name(0)
  local start = (name ~= "" and vim.bo.buftype == "") and vim.fs.dirname(name) or uv.cwd()
  local found = vim.fs.find(".git", { upward = true, path = start, limit = 1 })[1]
  return found and vim.fs.dirname(found) or nil, start
end

local function key()
  local bytes = uv.random and uv.random(16) or tostring(uv.hrtime()) .. tostring(math.random())
  return "nvim-" .. (bytes:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

local function send(params, cb)
  client.rpc("task/submit", params, function(err, out)
    if err then
      return cb(err)
    end
    local on = params.repo and (" on " .. params.repo) or ""
    local again = util.val(out.duplicate) and " (submitted before)" or ""
    util.notify(string.format("submitted %s (%s)%s%s", out.task_id, out.state, on, again))
    cb(nil, { task_id = out.task_id, state = out.state, repo = params.repo })
  end)
end

--- Run :Tierd submit for `cmd` ({args, bang, range, line1, line2}); cb(err, {task_id, state}).
function M.run(cmd, cb)
  local flags, goal = M.parse(cmd.args)
  if not flags then
    return cb(goal)
  end
  local params = { idempotency_key = key() }
  local options = vim.deepcopy(config.get("submit_options") or {})
  options.approval = flags.approval or options.approval
  if next(options) then
    params.options = options
  end
  if cmd.bang then
    local root, start = M.git_root()
    if not root then
      return cb("submit!: " .. start .. " is not in a git repository (a code task needs one)")
    end
    params.repo = root
    params.base = flags.base
    params.include_uncommitted = flags.include_uncommitted or nil
  elseif flags.base or flags.include_uncommitted then
    return cb("submit: --base and --uncommitted go with a code task (:Tierd submit!)")
  end
  if cmd.range and cmd.range > 0 then
    local text = M.selection(cmd.line1, cmd.line2)
    if goal == "" then
      goal = text
    else
      local file = vim.fn.expand("%:~:.")
      local where = file ~= "" and file or "[No Name]"
      params.context = string.format("From %s, lines %d-%d:\n%s", where, cmd.line1, cmd.line2, text)
    end
  end
  if vim.trim(goal) ~= "" then
    params.goal = goal
    return send(params, cb)
  end
  vim.ui.input({ prompt = cmd.bang and "tierd code task goal: " or "tierd goal: " }, function(input)
    if not input or vim.trim(input) == "" then
      return cb("submit: no goal; nothing sent")
    end
    params.goal = input
    send(params, cb)
  end)
end

return M
