-- A small HTTP/1.1 client on libuv (vim.uv, vim.loop before 0.10): the daemon's API on
-- loopback without curl or any other process, so the bearer token never leaves this Neovim
-- (no command line, no environment, no pipe). One request per connection (Connection:
-- close); bodies framed by Content-Length, chunked transfer encoding, or the close.
--
-- Every callback runs on the main loop (vim.schedule), never in libuv's fast context, and
-- in the order the bytes came.

local uv = vim.uv or vim.loop

local M = {}

--- "http://host:port" -> host, port, Host header value; nil and a reason when it is not one.
function M.parse_url(url)
  if type(url) ~= "string" then
    return nil, "the daemon URL is not a string"
  end
  local trimmed = url:gsub("/+$", "")
  local v6, v6port = trimmed:match("^http://%[([%x:%.]+)%]:(%d+)$")
  if v6 then
    return v6, tonumber(v6port), "[" .. v6 .. "]:" .. v6port
  end
  local host, port = trimmed:match("^http://([%w%.%-]+):(%d+)$")
  if host then
    return host, tonumber(port), host .. ":" .. port
  end
  return nil, "the daemon URL must be http://host:port, not " .. vim.inspect(url)
end

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

--- Resolve `host` (a name only when it is not an address already) and call cb(err, addr).
local function resolve(host, cb)
  if is_ip(host) then
    return cb(nil, host)
  end
  uv.getaddrinfo(host, nil, { socktype = "stream" }, function(err, res)
    if err or not res or not res[1] then
      return cb(err or ("cannot resolve " .. host))
    end
    cb(nil, res[1].addr)
  end)
end

-- --- response parsing ----------------------------------------------------------------------

local function parse_head(head)
  local lines = vim.split(head, "\r\n", { plain = true })
  local status = tonumber((lines[1] or ""):match("^HTTP/1%.[01] (%d%d%d)"))
  if not status then
    return nil
  end
  local headers = {}
  for i = 2, #lines do
    local name, value = lines[i]:match("^([^:]+):%s*(.-)%s*$")
    if name then
      headers[name:lower()] = value
    end
  end
  return status, headers
end

--- A body decoder for one response: feed(bytes) -> decoded bytes, done?, error.
local function body_decoder(headers)
  local te = (headers["transfer-encoding"] or ""):lower()
  if te:find("chunked", 1, true) then
    local buf, need, finished = "", nil, false
    return function(bytes)
      buf = buf .. bytes
      local out = {}
      while not finished do
        if need == nil then
          local eol = buf:find("\r\n", 1, true)
          if not eol then
            break
          end
          local size = tonumber(buf:sub(1, eol - 1):match("^%s*(%x+)"), 16)
          if not size then
            return table.concat(out), true, "a malformed chunk"
          end
          buf = buf:sub(eol + 2)
          if size == 0 then
            finished = true -- trailers, if any, are not needed
            break
          end
          need = size
        end
        if #buf < need + 2 then
          break
        end
        out[#out + 1] = buf:sub(1, need)
        buf = buf:sub(need + 3)
        need = nil
      end
      return table.concat(out), finished
    end
  end
  local length = tonumber(headers["content-length"] or "")
  if length then
    local got = 0
    return function(bytes)
      got = got + #bytes
      return bytes, got >= length
    end
  end
  return function(bytes)
    return bytes, false -- until the server closes
  end
end

-- --- the request ---------------------------------------------------------------------------

local function build_request(opts, host_header)
  local lines = {
    string.format("%s %s HTTP/1.1", opts.method or "GET", opts.path or "/"),
    "Host: " .. host_header,
    "Connection: close",
    "User-Agent: tierd.nvim",
  }
  for name, value in pairs(opts.headers or {}) do
    lines[#lines + 1] = name .. ": " .. value
  end
  if opts.body then
    lines[#lines + 1] = "Content-Length: " .. #opts.body
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

--- The reader of one response: on_read(err, chunk) for tcp:read_start. It parses the head,
--- decodes the body, streams it to opts.on_data (a 200 answer with on_data) or keeps it, and
--- calls finish(err, resp) at its end.
local function response_reader(opts, handle, arm, finish)
  local buf, status, headers, decode = "", nil, nil, nil
  local body = {}
  local streaming = false

  local function on_body(bytes, eof)
    local data, complete, problem = decode(bytes)
    if #data > 0 then
      if streaming then
        vim.schedule(function()
          if not handle.closed then
            opts.on_data(data)
          end
        end)
      else
        body[#body + 1] = data
      end
    end
    if problem then
      return finish({ kind = "protocol", message = problem })
    end
    if complete or eof then
      finish(nil, { status = status, headers = headers, body = table.concat(body) })
    end
  end

  local function on_read(err, chunk)
    if err then
      return finish({ kind = "closed", message = "the connection failed: " .. err })
    end
    arm()
    if chunk == nil then -- the server closed
      if not status then
        return finish({ kind = "closed", message = "the connection was closed before an answer" })
      end
      return on_body("", true)
    end
    if status then
      return on_body(chunk, false)
    end
    buf = buf .. chunk
    local eoh = buf:find("\r\n\r\n", 1, true)
    if not eoh then
      return
    end
    status, headers = parse_head(buf:sub(1, eoh - 1))
    if not status then
      return finish({ kind = "protocol", message = "the server does not speak HTTP" })
    end
    decode = body_decoder(headers)
    streaming = opts.on_data ~= nil and status == 200
    if streaming and opts.on_open then
      vim.schedule(function()
        if not handle.closed then
          opts.on_open(status, headers)
        end
      end)
    end
    local rest = buf:sub(eoh + 4)
    buf = ""
    on_body(rest, false)
  end

  return on_read
end

--- Send one request.
--- opts: url ("http://host:port"), method, path, headers (table), body (string),
---   timeout_ms (the longest wait for bytes; default 30000),
---   on_data(chunk) (stream the body of a 200 answer instead of keeping it),
---   on_open(status, headers) (with on_data: the 200 head has come),
---   idle_timeout_ms (with on_data: the longest silence; 0 or nil: no limit).
--- cb(err, resp): err = {kind = "connect"|"timeout"|"closed"|"protocol", message};
---   resp = {status, headers, body}. Returns a handle with :close() (cb is then not called).
function M.request(opts, cb)
  local host, port, host_header = M.parse_url(opts.url)
  local handle = { closed = false }
  local tcp, timer
  local done = false

  local function cleanup()
    if timer and not timer:is_closing() then
      timer:stop()
      timer:close()
    end
    if tcp and not tcp:is_closing() then
      tcp:close()
    end
  end

  local function finish(err, resp)
    if done then
      return
    end
    done = true
    cleanup()
    if not handle.closed then
      vim.schedule(function()
        cb(err, resp)
      end)
    end
  end

  function handle:close()
    self.closed = true
    done = true
    cleanup()
  end

  if not host then
    finish({ kind = "protocol", message = port })
    return handle
  end

  local wait_ms = opts.on_data and (opts.idle_timeout_ms or 0) or (opts.timeout_ms or 30000)
  timer = uv.new_timer()
  local function arm()
    if wait_ms > 0 and not done then
      timer:stop()
      timer:start(wait_ms, 0, function()
        local text = string.format("no answer within %gs", wait_ms / 1000)
        finish({ kind = "timeout", message = text })
      end)
    end
  end
  arm()

  local on_read = response_reader(opts, handle, arm, finish)

  resolve(host, function(rerr, addr)
    if rerr then
      return finish({ kind = "connect", message = tostring(rerr) })
    end
    if done then
      return
    end
    tcp = uv.new_tcp()
    tcp:connect(addr, port, function(cerr)
      if cerr then
        return finish({ kind = "connect", message = cerr })
      end
      if done then
        return
      end
      tcp:write(build_request(opts, host_header))
      tcp:read_start(on_read)
    end)
  end)
  return handle
end

return M
