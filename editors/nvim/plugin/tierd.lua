-- tierd.nvim: registers :Tierd and the tierd://task/* buffers; the rest loads on first use.
if vim.g.loaded_tierd then
  return
end
vim.g.loaded_tierd = true

vim.api.nvim_create_user_command("Tierd", function(opts)
  require("tierd").wire()
  require("tierd.commands").run(opts)
end, {
  nargs = "*",
  range = true,
  bang = true,
  desc = "tierd: submit, list, inbox, show, answer, approve, reject, cancel, diff, apply",
  complete = function(arglead, cmdline, pos)
    return require("tierd.commands").complete(arglead, cmdline, pos)
  end,
})

local group = vim.api.nvim_create_augroup("tierd", { clear = true })
vim.api.nvim_create_autocmd("BufReadCmd", {
  group = group,
  pattern = "tierd://task/*",
  desc = "tierd: a task's view (from the inbox's quickfix entries)",
  callback = function(ev)
    require("tierd").wire()
    require("tierd.views").load_task(ev.buf)
  end,
})
