-- A task as the lines of its view (Markdown): what task/get answers, for a person.

local util = require("tierd.util")

local M = {}
local val = util.val

local function usd(x)
  x = val(x)
  return type(x) == "number" and string.format("$%.4f", x) or "?"
end

local function secs(x)
  x = val(x)
  return type(x) == "number" and string.format("%.1fs", x) or "?"
end

local function header(task, out)
  local goal = util.split_lines(task.goal)
  out[#out + 1] = "# " .. (goal[1] or "")
  for i = 2, #goal do
    out[#out + 1] = goal[i]
  end
  out[#out + 1] = ""
  out[#out + 1] = string.format(
    "task %s · %s · submitted %s ago · changed %s ago",
    task.id,
    task.state,
    util.ago(task.created_at),
    util.ago(task.updated_at)
  )
  local code = val(task.code)
  if code then
    local commit = tostring(val(code.base_commit) or "?"):sub(1, 12)
    local base = string.format("base %s at %s", val(code.base) or "HEAD", commit)
    out[#out + 1] = string.format("repo %s  %s", val(code.repo) or "?", base)
  end
  if val(task.error) then
    out[#out + 1] = "error: " .. util.line(task.error)
  end
  if task.state == "input_required" then
    local open = #util.open_questions(task)
    out[#out + 1] = string.format("> %d open question(s): :Tierd answer", open)
  elseif task.state == "awaiting_approval" then
    local steps = code and ":Tierd diff, :Tierd apply [merge|branch|patch], :Tierd reject {comment}"
      or ":Tierd approve, :Tierd reject {comment}"
    out[#out + 1] = "> waits for your approval: " .. steps
  end
end

local function questions(task, out)
  local qs = val(task.questions) or {}
  if #qs == 0 then
    return
  end
  out[#out + 1] = ""
  out[#out + 1] = "## Questions"
  for _, q in ipairs(qs) do
    local stream = val(q.stream_id) and (" (" .. q.stream_id .. ")") or ""
    out[#out + 1] = string.format("- %s%s: %s", q.id, stream, util.line(q.question))
    local answer = val(q.answer)
    out[#out + 1] = "  answer: " .. (answer and util.line(answer) or "(open)")
  end
end

local function streams(task, out)
  local list = val(task.streams) or {}
  if #list == 0 then
    return
  end
  out[#out + 1] = ""
  out[#out + 1] = "## Streams"
  for _, s in ipairs(list) do
    local verdict = val(s.verdict) and (" · " .. s.verdict) or ""
    local files = ""
    local code = val(s.code)
    if code and #(val(code.files) or {}) > 0 then
      files = string.format(" · %d file(s)", #code.files)
    end
    local title = util.line(s.title, 60)
    out[#out + 1] = string.format("- %s [%s%s%s] %s", s.id, s.state, verdict, files, title)
  end
end

local function code_result(task, out)
  local code = val(task.code)
  local result = code and val(code.result)
  if not result then
    return
  end
  out[#out + 1] = ""
  out[#out + 1] = "## Code result"
  out[#out + 1] = string.format(
    "%s at %s: %d file(s) +%s -%s",
    result.branch,
    tostring(val(result.head) or "?"):sub(1, 12),
    #(val(result.files) or {}),
    tostring(val(result.insertions) or "?"),
    tostring(val(result.deletions) or "?")
  )
  for _, f in ipairs(val(result.files) or {}) do
    out[#out + 1] = "  " .. f
  end
  local tests = val(result.tests)
  if tests and val(tests.command) then
    local exit = tostring(val(tests.exit_code) or "none")
    out[#out + 1] = string.format("tests: `%s` exit %s", tests.command, exit)
  end
  local applied = val(code.applied)
  if applied then
    local where = val(applied.path) or val(applied.branch) or ""
    local commit = tostring(val(applied.commit) or ""):sub(1, 12)
    out[#out + 1] = string.format("applied: %s %s %s", applied.how, where, commit)
  end
end

local function result(task, out)
  if not val(task.result) then
    return
  end
  out[#out + 1] = ""
  out[#out + 1] = "## Result"
  out[#out + 1] = ""
  vim.list_extend(out, util.split_lines(task.result))
end

local function report(task, out)
  local r = val(task.report)
  if type(r) ~= "table" then
    return
  end
  local parts = {}
  local cost = val(r.cost)
  if type(cost) == "table" then
    parts[#parts + 1] = "cost " .. usd(cost.total_usd)
    if val(cost.tiering_saved_usd) then
      parts[#parts + 1] = "tiering saved " .. usd(cost.tiering_saved_usd)
    end
  end
  local usage = val(r.usage)
  local total = type(usage) == "table" and val(usage.total)
  if type(total) == "table" and val(total.tokens) then
    parts[#parts + 1] = string.format("%d tokens", total.tokens)
  end
  local time = val(r.time)
  if type(time) == "table" then
    parts[#parts + 1] = secs(time.work_s) .. " of work"
    if (val(time.human_wait_s) or 0) > 0 then
      parts[#parts + 1] = secs(time.human_wait_s) .. " waiting for you"
    end
  end
  if #parts > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "## Report"
    out[#out + 1] = table.concat(parts, " · ")
  end
end

--- The lines of `task`'s view.
function M.task(task)
  local out = {}
  header(task, out)
  questions(task, out)
  streams(task, out)
  code_result(task, out)
  result(task, out)
  report(task, out)
  return out
end

--- The lines of a task list: a header, then one task a line (its id first).
function M.list(tasks, states)
  local only = (states and #states > 0) and (" (" .. table.concat(states, ", ") .. ")") or ""
  local title = "tierd tasks" .. only
  local out = { title .. " · <CR> opens one · r refreshes · q closes", "" }
  if #tasks == 0 then
    out[#out + 1] = "no tasks"
  end
  for _, t in ipairs(tasks) do
    local repo = val(t.repo) and vim.fn.fnamemodify(t.repo, ":t") or "-"
    local age, goal = util.ago(t.created_at), util.line(t.goal, 80)
    out[#out + 1] = string.format("%s  %-17s %5s  %-12s %s", t.id, t.state, age, repo, goal)
  end
  return out
end

return M
