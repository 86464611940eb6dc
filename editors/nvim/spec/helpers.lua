-- What the headless specs share: the plugin on the runtimepath, messages captured, and
-- assertions that end Neovim with exit code 1 and a message at the first failure.
--
-- Run a spec: TIERD_HOME=... nvim --clean --headless -l editors/nvim/spec/<name>_spec.lua
-- The last line it prints is "RESULT <json>", for the test that ran it.

local H = {}

local here = debug.getinfo(1, "S").source:sub(2)
H.root = vim.fn.fnamemodify(here, ":p:h:h") -- editors/nvim
vim.opt.runtimepath:prepend(H.root)
vim.cmd("runtime plugin/tierd.lua")

H.messages = {}
H.started = (vim.uv or vim.loop).hrtime()
vim.notify = function(msg, level)
  H.messages[#H.messages + 1] = { msg = msg, level = level or vim.log.levels.INFO }
  local at = ((vim.uv or vim.loop).hrtime() - H.started) / 1e9
  io.stdout:write(string.format("%6.2fs notify: %s\n", at, (msg:gsub("\n", "\n  "))))
end

local dones = {}
vim.api.nvim_create_autocmd("User", {
  pattern = "TierdDone",
  callback = function(ev)
    dones[#dones + 1] = ev.data
  end,
})

function H.fail(msg)
  io.stderr:write("FAIL: " .. msg .. "\n" .. debug.traceback("", 2) .. "\n")
  io.stderr:flush()
  os.exit(1)
end

function H.ok(value, what)
  if not value then
    H.fail(what or "expected a true value")
  end
  return value
end

function H.eq(got, want, what)
  if not vim.deep_equal(got, want) then
    local text = "%s: got %s, want %s"
    H.fail(string.format(text, what or "values differ", vim.inspect(got), vim.inspect(want)))
  end
end

function H.has(text, part, what)
  if type(text) ~= "string" or not text:find(part, 1, true) then
    local why = what or "missing text"
    H.fail(string.format("%s: %s not in %s", why, vim.inspect(part), vim.inspect(text)))
  end
end

--- Run the event loop until fn() is truthy (its value is returned) or fail after `ms`.
function H.wait(ms, fn, what)
  local value
  local ok = vim.wait(ms, function()
    value = fn()
    return value
  end, 20)
  if not ok then
    H.fail("timed out after " .. ms .. " ms: " .. (what or "condition"))
  end
  return value
end

--- Run `:Tierd <args>` and wait for its TierdDone; return its data ({command, ok, error,
--- result}). `range` = {line1, line2} runs it on those lines.
function H.tierd(args, range, ms)
  local before = #dones
  local prefix = range and string.format("%d,%d", range[1], range[2]) or ""
  local at = ((vim.uv or vim.loop).hrtime() - H.started) / 1e9
  io.stdout:write(string.format("%6.2fs :%sTierd %s\n", at, prefix, args))
  vim.cmd(prefix .. "Tierd " .. args)
  return H.wait(ms or 30000, function()
    return dones[before + 1]
  end, ":Tierd " .. args .. " to finish")
end

--- Like H.tierd, and fail unless it succeeded.
function H.tierd_ok(args, range, ms)
  local done = H.tierd(args, range, ms)
  if not done.ok then
    H.fail(":Tierd " .. args .. " failed: " .. tostring(done.error))
  end
  return done
end

--- The last message that contains `part`, or nil.
function H.message(part)
  for i = #H.messages, 1, -1 do
    if H.messages[i].msg:find(part, 1, true) then
      return H.messages[i]
    end
  end
  return nil
end

--- Our quickfix list's entry for `id` (in `state` if given), or nil.
function H.qf_entry(id, state)
  local list = vim.fn.getqflist({ title = 1, items = 1 })
  if list.title ~= require("tierd.inbox").TITLE then
    return nil
  end
  for _, it in ipairs(list.items) do
    local data = it.user_data
    if type(data) == "table" and data.tierd_task == id and (not state or data.state == state) then
      return it
    end
  end
  return nil
end

function H.lines(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false), "\n")
end

--- Print the result for the test and end with exit code 0.
function H.finish(result)
  io.stdout:write("RESULT " .. vim.json.encode(result or vim.empty_dict()) .. "\n")
  io.stdout:flush()
  os.exit(0)
end

return H
