-- Small helpers shared by the modules: messages, JSON nulls, scratch buffers, User events.

local M = {}

--- A message to the user, always prefixed "tierd: ". Never give it the token.
function M.notify(msg, level)
  vim.notify("tierd: " .. msg, level or vim.log.levels.INFO, { title = "tierd" })
end

function M.error(msg)
  M.notify(msg, vim.log.levels.ERROR)
end

function M.warn(msg)
  M.notify(msg, vim.log.levels.WARN)
end

--- JSON null (vim.NIL) as nil.
function M.val(x)
  if x == vim.NIL then
    return nil
  end
  return x
end

--- The questions of `task` not answered yet, in order.
function M.open_questions(task)
  local open = {}
  for _, q in ipairs(M.val(task.questions) or {}) do
    if M.val(q.answer) == nil then
      open[#open + 1] = q
    end
  end
  return open
end

--- The first line of a text, cut to `width` characters.
function M.line(text, width)
  text = tostring(M.val(text) or "")
  local first = text:match("^[^\n]*") or ""
  if width and vim.fn.strchars(first) > width then
    first = vim.fn.strcharpart(first, 0, width - 1) .. "…"
  end
  return first
end

function M.short(id)
  return tostring(id):sub(1, 8)
end

--- "12s", "5m", "3h", "2d" since the Unix time `t`.
function M.ago(t)
  t = M.val(t)
  if type(t) ~= "number" then
    return "?"
  end
  local s = math.max(0, os.time() - t)
  if s < 60 then
    return string.format("%ds", s)
  elseif s < 3600 then
    return string.format("%dm", s / 60)
  elseif s < 86400 then
    return string.format("%dh", s / 3600)
  end
  return string.format("%dd", s / 86400)
end

--- The buffer named exactly `name`, or nil (bufnr() would take `name` as a pattern).
function M.find_buf(name)
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(buf) == name then
      return buf
    end
  end
  return nil
end

--- A buffer named `name` (made once, kept), scratch: not a file, never written.
function M.scratch(name, filetype)
  local buf = M.find_buf(name)
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
  end
  M.make_scratch(buf, filetype)
  return buf
end

function M.make_scratch(buf, filetype)
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "hide"
  vim.bo[buf].swapfile = false
  if filetype and vim.bo[buf].filetype ~= filetype then
    vim.bo[buf].filetype = filetype
  end
end

function M.set_lines(buf, lines)
  if not vim.api.nvim_buf_is_valid(buf) then
    return
  end
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
end

--- Show `buf`: focus a window that has it, else open one with `split` (an Ex command).
function M.show(buf, split)
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_buf(win) == buf then
      vim.api.nvim_set_current_win(win)
      return win
    end
  end
  vim.cmd(split)
  local win = vim.api.nvim_get_current_win()
  vim.api.nvim_win_set_buf(win, buf)
  return win
end

--- Fire `User <pattern>` with `data` (for statuslines, and the plugin's own specs).
function M.fire(pattern, data)
  vim.api.nvim_exec_autocmds("User", { pattern = pattern, modeline = false, data = data })
end

function M.split_lines(text)
  local lines = vim.split(tostring(M.val(text) or ""), "\n", { plain = true })
  if lines[#lines] == "" then
    table.remove(lines)
  end
  return lines
end

return M
