-- Finding the daemon exactly as the tierd CLI does (daemon/cli/client.py, Client.discover):
--
-- 1. read daemon.json ({url, token, pid, version, instance_id}) in $TIERD_HOME, else
--    $XDG_STATE_HOME/tierd, else ~/.local/state/tierd;
-- 2. its pid must be a live process (not a zombie);
-- 3. its url must be http://host:port;
-- 4. GET /healthz WITHOUT the token must echo daemon.json's instance_id. A daemon.json left
--    by a killed daemon can point at a reused pid and a port another server took: the token
--    is sent only once the server proved to be the daemon that wrote the file. A file with
--    no instance_id (an older tierd) cannot be verified and counts as no daemon.
--
-- A verified daemon is remembered by (url, pid, instance_id) so later calls skip step 4;
-- client.lua forgets it as soon as a call finds nothing answering.

local http = require("tierd.http")
local uv = vim.uv or vim.loop

local M = {}

M.NOT_RUNNING = "no tierd daemon is running for this home"
M.HINT = ". Start one with `tierd serve` (or try `tierd demo`)."

--- The "no daemon" error, worded as the CLI words it (it exits 3 there).
function M.not_running(detail, hint)
  local text = M.NOT_RUNNING .. (detail and detail ~= "" and (" (" .. detail .. ")") or "")
  if hint ~= false then
    text = text .. M.HINT
  end
  return { kind = "no_daemon", message = text }
end

local function strip_slash(path)
  return (#path > 1 and path:gsub("/+$", "")) or path
end

--- The directory that holds daemon.json.
function M.state_dir()
  local home = vim.env.TIERD_HOME
  if home and home ~= "" then
    if home == "~" or home:sub(1, 2) == "~/" then
      home = uv.os_homedir() .. home:sub(2)
    end
    return strip_slash(vim.fn.resolve(vim.fn.fnamemodify(home, ":p")))
  end
  local xdg = vim.env.XDG_STATE_HOME
  if xdg and xdg:sub(1, 1) == "/" then -- a relative XDG path is invalid: ignored
    return strip_slash(xdg) .. "/tierd"
  end
  return uv.os_homedir() .. "/.local/state/tierd"
end

function M.discovery_file()
  return M.state_dir() .. "/daemon.json"
end

--- daemon.json as a table, or nil when it is missing or not one (read_discovery's rules).
function M.read(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local text = f:read("*a")
  f:close()
  local ok, data = pcall(vim.json.decode, text)
  if not ok or type(data) ~= "table" or data.url == nil or data.token == nil then
    return nil
  end
  local pid = tonumber(data.pid)
  if not pid or pid ~= math.floor(pid) or pid <= 0 or pid >= 2 ^ 31 then
    return nil -- no process has it: a hand-made or damaged file
  end
  local instance = data.instance_id
  return {
    url = tostring(data.url),
    token = tostring(data.token),
    pid = pid,
    version = type(data.version) == "string" and data.version or "",
    instance_id = (type(instance) == "string" and instance ~= "") and instance or nil,
  }
end

--- Whether `pid` is a live process (a zombie is not): psutil's answer, from kill(pid, 0) and
--- /proc where there is one.
function M.pid_alive(pid)
  local ok, _, name = uv.kill(pid, 0)
  if not ok and name ~= "EPERM" then
    return false
  end
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    local state = stat:match("^.*%)%s+(%a)")
    if state == "Z" then
      return false
    end
  end
  return true
end

local function same(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then
    return false
  end
  local diff = 0
  for i = 1, #a do
    diff = diff + ((a:byte(i) == b:byte(i)) and 0 or 1) -- no early exit: constant time
  end
  return diff == 0
end

--- Why the server that answered /healthz with `health` is not the daemon `info` describes,
--- or nil when it is (daemon.home.discovery.identity_problem).
function M.identity_problem(info, health)
  if not info.instance_id then
    return "its daemon.json has no instance id (written by an older tierd), so it cannot be "
      .. "verified: restart the daemon"
  end
  local claimed = type(health) == "table" and health.instance_id or nil
  if not same(claimed, info.instance_id) then
    local text = "the server at %s is not the tierd daemon that wrote daemon.json"
    return string.format(text, info.url)
  end
  return nil
end

local verified = nil

function M.forget()
  verified = nil
end

local function is_verified(info)
  return verified ~= nil
    and verified.url == info.url
    and verified.pid == info.pid
    and verified.instance_id == info.instance_id
end

--- Find the daemon: cb(nil, info) with info = {url, token, pid, version, instance_id}, or
--- cb(err) with err.kind "no_daemon" and the CLI's message.
function M.discover(cb, timeout_ms)
  local path = M.discovery_file()
  local info = M.read(path)
  if not info then
    return cb(M.not_running("no " .. path))
  end
  if not M.pid_alive(info.pid) then
    return cb(M.not_running(string.format("the daemon with pid %d is gone", info.pid)))
  end
  local host, problem = http.parse_url(info.url)
  if not host then
    return cb(M.not_running(path .. ": " .. problem))
  end
  if is_verified(info) then
    return cb(nil, info)
  end
  http.request({
    url = info.url,
    path = "/healthz",
    headers = { Accept = "application/json" }, -- no token: not yet known to be ours
    timeout_ms = timeout_ms,
  }, function(err, resp)
    if err then
      if err.kind == "timeout" then
        return cb({
          kind = "no_daemon",
          message = string.format(
            "the tierd daemon at %s did not answer within %gs; it may be overloaded or stuck",
            info.url,
            (timeout_ms or 30000) / 1000
          ),
        })
      end
      if err.kind == "protocol" then
        return cb(M.not_running(string.format("the server at %s does not speak HTTP", info.url)))
      end
      return cb(M.not_running("nothing answers at " .. info.url))
    end
    local health = nil
    if resp.status == 200 then
      local ok, decoded = pcall(vim.json.decode, resp.body)
      health = ok and decoded or nil
    end
    local why = M.identity_problem(info, health)
    if why then
      return cb(M.not_running("no daemon answering: " .. why))
    end
    verified = { url = info.url, pid = info.pid, instance_id = info.instance_id }
    cb(nil, info)
  end)
end

return M
