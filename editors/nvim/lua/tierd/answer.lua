-- :Tierd answer: a task's open questions, answered in one go (task/answer), and the message
-- after an approval or a rejection (task/approve).

local client = require("tierd.client")
local util = require("tierd.util")

local M = {}

--- Ask each question in turn (vim.ui.input); cb(answers) with the ones given (a blank answer
--- leaves its question open), or cb(nil) when the user cancels.
local function ask(questions, cb)
  local answers, i = {}, 0
  local function next_one()
    i = i + 1
    local q = questions[i]
    if not q then
      return cb(answers)
    end
    local prompt = string.format("[%d/%d] %s ", i, #questions, util.line(q.question))
    vim.ui.input({ prompt = prompt }, function(text)
      if text == nil then
        return cb(nil)
      end
      if vim.trim(text) ~= "" then
        answers[q.id] = text
      end
      next_one()
    end)
  end
  next_one()
end

local function send(task, answers, cb)
  client.rpc("task/answer", { task_id = task.id, answers = answers }, function(err, out)
    if err then
      return cb(err)
    end
    local n = #(out.answered or {})
    util.notify(string.format("answered %d question(s) of %s; it goes on", n, out.task_id))
    cb(nil, { task_id = out.task_id, answered = out.answered })
  end)
end

--- Answer task `id`'s open questions: with `text`, the one open question; without, each in
--- turn. cb(err, {task_id, answered}).
function M.run(id, text, cb)
  client.rpc("task/get", { task_id = id }, function(err, task)
    if err then
      return cb(err)
    end
    local open = util.open_questions(task)
    if #open == 0 then
      return cb(string.format("task %s has no open question (it is %s)", task.id, task.state))
    end
    if text ~= "" then
      if #open > 1 then
        return cb(string.format(
          "task %s has %d open questions: run :Tierd answer %s without text to answer each",
          task.id,
          #open,
          task.id
        ))
      end
      return send(task, { [open[1].id] = text }, cb)
    end
    ask(open, function(answers)
      if not answers or next(answers) == nil then
        return cb("answer: nothing answered; nothing sent")
      end
      send(task, answers, cb)
    end)
  end)
end

--- The message after task/approve answered `out` ({task_id, decision, applied}).
function M.tell_decided(out)
  local applied = util.val(out.applied)
  if out.decision == "reject" then
    return util.notify(string.format("rejected %s: it goes back for a revision", out.task_id))
  end
  if type(applied) ~= "table" then
    return util.notify("approved " .. out.task_id)
  end
  if applied.how == "merge" then
    local again = util.val(applied.already) and " (it was merged already)" or ""
    local commit = tostring(applied.commit):sub(1, 12)
    local text = "merged into %s at %s%s: approved %s"
    util.notify(string.format(text, applied.branch, commit, again, out.task_id))
    vim.cmd("silent! checktime") -- buffers of the files it changed show the new text
  elseif applied.how == "patch" then
    util.notify(string.format("patch written to %s: approved %s", applied.path, out.task_id))
  else
    local branch = util.val(applied.branch) or "?"
    util.notify(string.format("approved %s; the result stays on %s", out.task_id, branch))
  end
end

return M
