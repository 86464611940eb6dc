-- A code task on the current buffer's repository (:Tierd submit!), with approval required:
-- it shows up in the quickfix list, :Tierd diff opens its change in a split (filetype diff),
-- a rejection without a comment sends nothing, and :Tierd apply merges it into the branch.

local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h") .. "/helpers.lua")
local repo = assert(os.getenv("TIERD_SPEC_REPO"))

vim.cmd("edit " .. vim.fn.fnameescape(repo .. "/src/__init__.py"))
local submitted = H.tierd_ok("submit! --approval Add half()").result
local id = submitted.task_id
H.eq(submitted.repo, repo, "the repository of the buffer")

H.wait(90000, function()
  return H.qf_entry(id, "awaiting_approval")
end, "the code task in the quickfix list, waiting for approval")
H.has(H.qf_entry(id).text, "code in", "the entry says it is code")

local wins = #vim.api.nvim_list_wins()
local diff = H.tierd_ok("diff")
H.eq(diff.result.task_id, id, "the diff of the waiting task")
H.eq(#vim.api.nvim_list_wins(), wins + 1, "a split")
H.eq(vim.bo.filetype, "diff", "filetype")
H.eq(vim.api.nvim_buf_get_name(0), "tierd://diff/" .. id, "the diff buffer")
H.has(H.lines(), "+++ b/src/feature.py", "the file")
H.has(H.lines(), "+def half(x):", "the change")

vim.ui.input = function(_, cb)
  cb(nil) -- the user escapes the prompt
end
local rejected = H.tierd("reject")
H.eq(rejected.ok, false, "a rejection without a comment")
H.has(rejected.error, "nothing sent", "its message")

local applied = H.tierd_ok("apply").result
H.eq(applied.task_id, id, "the applied task")
H.eq(applied.applied.how, "merge", "merged")
H.ok(H.message("merged into main at"), "the merge was told")
H.wait(10000, function()
  return H.qf_entry(id) == nil
end, "the task leaves the quickfix list")

H.finish({ task = id, commit = applied.applied.commit })
