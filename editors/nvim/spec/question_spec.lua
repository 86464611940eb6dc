-- A task that asks a question shows up, live, in the quickfix list of tasks waiting for you;
-- :Tierd answer (the question asked in a prompt) resumes it and it completes.

local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h") .. "/helpers.lua")
local question = assert(os.getenv("TIERD_SPEC_QUESTION"))

local id = H.tierd_ok("submit Plan the launch").result.task_id
H.wait(90000, function()
  return H.qf_entry(id, "input_required")
end, "the task in the quickfix list, waiting for an answer")
local entry = H.qf_entry(id)
H.has(entry.text, question, "the entry shows the question")
H.has(entry.text, "Plan the launch", "the entry shows the goal")
H.eq(require("tierd").status(), "live", "the live feed")
H.ok(H.message("task " .. id .. " asks you a question"), "the notification")

-- The entry opens the task's view.
vim.cmd("cfirst")
H.wait(10000, function()
  return vim.b.tierd_task_state
end, "the view from the quickfix entry")
H.eq(vim.api.nvim_buf_get_name(0), "tierd://task/" .. id, "the entry's buffer")
H.has(H.lines(), question, "the view shows the question")
H.has(H.lines(), "answer: (open)", "not answered yet")

local asked = {}
vim.ui.input = function(opts, cb)
  asked[#asked + 1] = opts.prompt
  cb("EMEA")
end
local done = H.tierd_ok("answer")
H.eq(done.result.task_id, id, "the answered task")
H.eq(#asked, 1, "one prompt")
H.has(asked[1], question, "the prompt is the question")

H.wait(60000, function()
  return vim.b.tierd_task_state == "completed"
end, "the view shows the task completed")
H.has(H.lines(), "answer: EMEA", "the answer in the view")
H.has(H.lines(), "## Result", "the result in the view")
H.wait(10000, function()
  return H.qf_entry(id) == nil
end, "the task leaves the quickfix list")
local none = H.tierd("answer " .. id .. " again")
H.eq(none.ok, false, "answering a completed task")
H.has(none.error, "has no open question", "its message")

H.finish({ task = id })
