-- tierd.nvim: the tierd daemon from Neovim. :Tierd submit|list|inbox|show|answer|approve|
-- reject|cancel|diff|apply, a quickfix list of the tasks waiting for you, a code task's diff
-- in a split, live over the daemon's event stream. See :help tierd.

local M = {}

local wired = false

--- Hook the live feed to the inbox and the views (once).
function M.wire()
  if wired then
    return
  end
  wired = true
  local live = require("tierd.live")
  live.on(require("tierd.inbox").on_event)
  live.on(require("tierd.views").on_event)
end

--- Optional: change the settings (see :help tierd-setup).
function M.setup(opts)
  require("tierd.config").setup(opts)
  M.wire()
end

--- The live feed's state for a statusline: "off", "connecting", "live" or "reconnecting".
function M.status()
  return (require("tierd.live").status())
end

--- The tasks waiting for you as last seen ({id, state, goal, ...}).
function M.waiting()
  return require("tierd.inbox").tasks()
end

return M
