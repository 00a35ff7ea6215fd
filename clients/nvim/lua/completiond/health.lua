-- :checkhealth completiond: the command, the server of the buffer, its repository's daemon and
-- model. The buffer is the current one, or the last file buffer entered (:checkhealth opens a
-- buffer of its own).

local M = {}

local STATUS_TIMEOUT_MS = 5000 -- `completiond status`: a daemon that answers does so at once

local health = vim.health
local start = health.start or health.report_start -- 0.10+ / 0.8-0.9
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local error = health.error or health.report_error
local info = health.info or health.report_info

--- Run argv: exit code and stdout (vim.system where there is one, with a time limit).
local function run(argv, timeout_ms)
  if vim.system then -- 0.10+
    local done = vim.system(argv, { text = true }):wait(timeout_ms)
    return done.code, done.stdout or ""
  end
  local out = vim.fn.system(argv)
  return vim.v.shell_error, out
end

local function report_command(plugin)
  local command = plugin.command()
  if #command == 0 or vim.fn.executable(command[1]) == 0 then
    error(("`%s` not found: put completiond on PATH, or set `cmd`"):format(command[1] or ""))
    return nil
  end
  local code, out = run(vim.list_extend(vim.list_extend({}, command), { "--version" }), 10000)
  if code ~= 0 then
    error(("`%s --version` failed (exit %s)"):format(table.concat(command, " "), code))
    return nil
  end
  ok(("%s (%s)"):format(vim.trim(out), vim.fn.exepath(command[1])))
  return command
end

local function target_buffer(plugin)
  local current = vim.api.nvim_get_current_buf()
  if vim.bo[current].buftype == "" and vim.api.nvim_buf_get_name(current) ~= "" then
    return current
  end
  local last = plugin.last_buffer
  return (last and vim.api.nvim_buf_is_valid(last)) and last or nil
end

local function report_bridge(plugin, bufnr)
  local clients = plugin.clients(bufnr)
  if #clients > 0 then
    local cmd = table.concat(clients[1].config.cmd, " ")
    ok(("server attached (client id %d): %s"):format(clients[1].id, cmd))
    return
  end
  local filetype = vim.bo[bufnr].filetype
  local filetypes = plugin.config.filetypes
  if filetypes and not vim.tbl_contains(filetypes, filetype) then
    info(("server not attached: filetype `%s` is not in `filetypes`"):format(filetype))
  else
    warn("server not attached to this buffer", {
      "Was setup() called? The server's messages: :lua print(vim.lsp.log.get_filename())",
    })
  end
end

local function describe_training(status)
  local training = status.training or {}
  if training.phase and training.phase ~= "" then
    local percent = math.floor((training.fraction or 0) * 100 + 0.5)
    local eta_s = training.etaSeconds or 0
    local eta = eta_s > 0 and (", about %d s left"):format(eta_s) or ""
    return ("training: %s, %d%%%s"):format(training.phase, percent, eta)
  end
  return ("training: %s"):format(status.trainingState ~= "" and status.trainingState or "idle")
end

local CONNECTION = {
  ["--socket"] = true,
  ["--listen"] = true,
  ["--token-file"] = true,
  ["--tls-ca"] = true,
}

--- The daemon options of `cmd` (e.g. `--socket PATH`): `status` asks the daemon the server asks.
local function connection_options(cmd)
  local options = {}
  for i, part in ipairs(cmd) do
    local name = part:match("^(%-%-[%w-]+)=") or part
    if CONNECTION[name] then
      table.insert(options, part)
      if name == part and cmd[i + 1] then
        table.insert(options, cmd[i + 1])
      end
    end
  end
  return options
end

local function report_daemon(plugin, command, root)
  local argv = vim.list_extend(vim.list_extend({}, command), { "status", "--json", "--repo", root })
  vim.list_extend(argv, connection_options(plugin.config.cmd))
  local code, out = run(argv, STATUS_TIMEOUT_MS)
  local decoded, status = pcall(vim.json.decode, out)
  if code ~= 0 or not decoded or type(status) ~= "table" then
    error(("`%s` failed (exit %s)"):format(table.concat(argv, " "), code))
    return
  end
  if status.pid then
    local by = (status.startedBy or "") ~= "" and status.startedBy or "hand"
    ok(("daemon answers: pid %d (started by %s)"):format(status.pid, by))
  else
    warn("no daemon answers for this repository", {
      "The server starts one when a file of it is opened (unless start_daemon = false)",
      "or run `completiond serve` in the repository",
    })
  end
  local model = status.model
  if model and model.version and model.version ~= "" then
    ok(("model %s"):format(model.version))
  else
    warn("no model yet: the first one trains once the daemon runs")
  end
  if status.pid then
    info(describe_training(status))
  end
  info(("store: %s"):format(status.store or "?"))
end

function M.check()
  local plugin = require("completiond")
  start("completiond: command")
  local command = report_command(plugin)
  start("completiond: buffer")
  local bufnr = target_buffer(plugin)
  if not bufnr then
    info("no file buffer: open a file of a repository")
    return
  end
  info(("buffer %d: %s"):format(bufnr, vim.api.nvim_buf_get_name(bufnr)))
  report_bridge(plugin, bufnr)
  local root = plugin.root(vim.fn.fnamemodify(vim.api.nvim_buf_get_name(bufnr), ":p"))
  if not root then
    warn("not in a repository (no root marker above it): no completions")
    return
  end
  ok(("repository: %s"):format(root))
  if command then
    start("completiond: daemon")
    report_daemon(plugin, command, root)
  end
end

return M
