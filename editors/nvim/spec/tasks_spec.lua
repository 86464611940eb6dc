-- :Tierd submit (goal from the arguments, and from a selection), :Tierd list shows the tasks,
-- :Tierd show opens a task's view, :Tierd cancel cancels (the view follows live).
-- The daemon's models answer slowly here: the tasks stay live until canceled.

local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h") .. "/helpers.lua")

local first = H.tierd_ok("submit Write the launch note").result
H.ok(first.task_id:match("^t%x+$"), "a task id")
H.ok(H.message("submitted " .. first.task_id), "the submit was told")

-- The goal from a selection (lines 1-2 of a buffer).
local lines = { "Summarize the Q3 numbers", "for the board", "not this" }
vim.api.nvim_buf_set_lines(0, 0, -1, false, lines)
local second = H.tierd_ok("submit", { 1, 2 }).result
-- Both a goal and a selection: the selection is the context.
local third = H.tierd_ok("submit --approval Check this", { 3, 3 }).result

H.tierd_ok("list")
H.eq(vim.api.nvim_buf_get_name(0), "tierd://tasks", "the list buffer")
local listed = H.lines()
for _, t in ipairs({ first, second, third }) do
  H.has(listed, t.task_id, "the list shows the task")
end
H.has(listed, "Write the launch note", "the list shows the goal")
-- <CR> on a task's line opens its view.
local row = vim.fn.search(first.task_id)
H.ok(row > 0, "the task's row")
vim.api.nvim_win_set_cursor(0, { row, 0 })
vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes("<CR>", true, false, true), "x", false)
H.wait(10000, function()
  return vim.api.nvim_buf_get_name(0) == "tierd://task/" .. first.task_id and vim.b.tierd_task_state
end, "the task view from the list")
H.has(H.lines(), "# Write the launch note", "the view's title")

-- :Tierd cancel from the view (the task under the cursor); the view follows live.
H.tierd_ok("cancel")
H.wait(15000, function()
  return vim.b.tierd_task_state == "canceled"
end, "the view shows the task canceled")
H.has(H.lines(), "· canceled ·", "the state in the view")

-- By id prefix, from anywhere.
vim.cmd("enew")
H.tierd_ok("show " .. second.task_id:sub(1, 16))
H.eq(vim.b.tierd_task_id, second.task_id, "show by prefix")
H.tierd_ok("cancel " .. second.task_id)
H.tierd_ok("cancel " .. third.task_id)
local again = H.tierd("cancel " .. third.task_id)
H.eq(again.ok, false, "canceling an ended task")

H.finish({ first = first.task_id, second = second.task_id, third = third.task_id })
