-- Finding the daemon as the CLI does: a clear message when no daemon answers (no
-- daemon.json, a dead pid, a closed port, a server that is not the daemon that wrote the
-- file, a file without an instance id), and the real daemon found through TIERD_HOME.
--
-- TIERD_SPEC_CASES: JSON list of {home, want} (want: a part of the message); the last home
-- (TIERD_HOME) is the real daemon's.

local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h") .. "/helpers.lua")
require("tierd").setup({ live = false }) -- each case points at another home

local cases = vim.json.decode((assert(os.getenv("TIERD_SPEC_CASES"), "TIERD_SPEC_CASES")))
local daemon_home = assert(os.getenv("TIERD_HOME"), "TIERD_HOME")
local seen = {}

for _, case in ipairs(cases) do
  vim.env.TIERD_HOME = case.home
  local done = H.tierd("list")
  H.eq(done.ok, false, "list without a daemon (" .. case.home .. ")")
  H.has(done.error, "no tierd daemon is running for this home", "the no-daemon message")
  H.has(done.error, case.want, "why, for " .. case.home)
  H.has(done.error, "Start one with `tierd serve`", "the hint")
  H.ok(H.message(case.want), "the message was shown")
  seen[#seen + 1] = done.error
end

vim.env.TIERD_HOME = daemon_home
local done = H.tierd_ok("list")
H.eq(require("tierd.discovery").state_dir(), vim.fn.resolve(daemon_home), "the state dir")
H.has(H.lines(), "tierd tasks", "the task list is shown")
H.eq(vim.api.nvim_buf_get_name(0), "tierd://tasks", "the list buffer")
H.eq(done.command, "list", "command")

-- Subcommand and argument completion.
local subs = vim.fn.getcompletion("Tierd ", "cmdline")
local names = { "submit", "list", "show", "answer", "approve", "reject", "cancel", "diff", "apply" }
for _, name in ipairs(vim.list_extend(names, { "inbox" })) do
  H.ok(vim.tbl_contains(subs, name), "completion offers " .. name)
end
H.eq(vim.fn.getcompletion("Tierd ap", "cmdline"), { "approve", "apply" }, "completion of ap")
local choices = vim.fn.getcompletion("Tierd apply @last ", "cmdline")
H.eq(choices, { "merge", "branch", "patch" }, "apply choices")
H.ok(vim.tbl_contains(vim.fn.getcompletion("Tierd list in", "cmdline"), "input_required"), "states")
local bad = H.tierd("frobnicate")
H.eq(bad.ok, false, "an unknown subcommand")
H.has(bad.error, "unknown subcommand", "its message")

H.finish({ errors = seen })
