-- The plugin's settings: defaults, and what require("tierd").setup{} changes.

local M = {}

M.defaults = {
  -- Follow the daemon's event stream once a :Tierd command has found the daemon: the
  -- quickfix list of tasks waiting for you, open task views and the task list stay current.
  live = true,
  -- Notify when a task starts waiting for you (a question, or a result to approve).
  notify_waiting = true,
  -- How the task list, a task view and a diff are opened ("split", "vsplit", "tab split", ...).
  split = "botright split",
  diff_split = "botright vsplit",
  -- :Tierd apply without a choice: "merge" (into your current branch), "branch" or "patch".
  apply = "merge",
  -- Options sent with every submit (e.g. { approval = "required" }).
  submit_options = {},
  -- Seconds a call may take before it counts as "not answering".
  timeout_s = 30,
  -- Open the quickfix window by itself when a task starts waiting for you.
  open_quickfix = false,
}

M.values = vim.deepcopy(M.defaults)

function M.setup(opts)
  M.values = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  return M.values
end

function M.get(key)
  return M.values[key]
end

return M
