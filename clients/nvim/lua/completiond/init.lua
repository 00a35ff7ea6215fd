-- completiond for Neovim: a thin client of `completiond lsp`, the language server that brings the
-- repository daemon's completions to editors. The server does the debouncing, caching and
-- post-processing; this file only starts it per repository and wires it to the buffer:
--   * Neovim >= 0.12: ghost text through LSP inline completion (vim.lsp.inline_completion);
--   * every version (>= 0.8): the completion menu through 'omnifunc' (<C-x><C-o>, or complete()).
-- See clients/nvim/README.md.

local M = {}

local defaults = {
  cmd = { "completiond", "lsp" }, -- the language server; --repo and the options below are added
  filetypes = nil, -- list of filetypes to attach to; nil: every file buffer
  min_confidence = nil, -- 0..1: leave out less likely candidates (nil: the bridge's default, 0.6)
  max_chars = nil, -- 1..400: longest completion (nil: the server's default, 80)
  root_markers = { ".git" }, -- the repository root is the nearest directory holding one of these
  start_daemon = true, -- the server starts a repository's daemon when none runs (false: --no-start)
  inline = true, -- ghost text where Neovim supports LSP inline completion (>= 0.12)
  keys = { -- insert-mode keys set on the buffers it attaches to; false: none
    complete = "<M-\\>", -- open the completion menu with the daemon's candidates
    accept = "<M-l>", -- accept the ghost text (inline completion only)
    next = "<M-]>", -- next / previous ghost text candidate (inline completion only)
    prev = "<M-[>",
  },
}

M.config = vim.deepcopy(defaults)
M.last_buffer = nil -- the last file buffer entered (:checkhealth reports on it)

local NAME = "completiond"
local group = nil

--- The plugin's language-server clients attached to a buffer.
function M.clients(bufnr)
  if vim.lsp.get_clients then -- 0.10+
    return vim.lsp.get_clients({ bufnr = bufnr, name = NAME })
  end
  local found = {}
  for _, client in pairs(vim.lsp.buf_get_clients(bufnr)) do
    if client.name == NAME then
      table.insert(found, client)
    end
  end
  return found
end

--- The repository root of a file: the nearest directory up from it holding a root marker; nil
--- outside any repository (such files share one server, which says once that they get nothing).
function M.root(path)
  local dir = vim.fs.dirname(path)
  local marker = vim.fs.find(M.config.root_markers, { path = dir, upward = true })[1]
  return marker and vim.fs.dirname(marker) or nil
end

--- `cmd` before its `lsp`: the completiond command itself (e.g. for `status`, `--version`).
function M.command()
  local command = {}
  for _, part in ipairs(M.config.cmd) do
    if part == "lsp" then
      break
    end
    table.insert(command, part)
  end
  return command
end

local function server_cmd(root)
  local cmd = vim.list_extend({}, M.config.cmd)
  if root then
    vim.list_extend(cmd, { "--repo", root })
  end
  if not M.config.start_daemon then
    table.insert(cmd, "--no-start")
  end
  if M.config.max_chars then
    vim.list_extend(cmd, { "--max-chars", tostring(M.config.max_chars) })
  end
  if M.config.min_confidence then
    vim.list_extend(cmd, { "--min-confidence", tostring(M.config.min_confidence) })
  end
  return cmd
end

local function inline_supported()
  return M.config.inline and vim.lsp.inline_completion ~= nil
end

local function on_attach(client, bufnr)
  -- The menu works everywhere: <C-x><C-o> asks the server (0.10+ sets this itself when unset).
  vim.bo[bufnr].omnifunc = "v:lua.vim.lsp.omnifunc"
  local inline = inline_supported() and client.server_capabilities.inlineCompletionProvider
  if inline then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  end
  local keys = M.config.keys
  if not keys then
    return
  end
  local function map(lhs, rhs, desc, expr)
    if lhs then
      local opts = { buffer = bufnr, expr = expr, desc = "completiond: " .. desc }
      vim.keymap.set("i", lhs, rhs, opts)
    end
  end
  map(keys.complete, M.complete, "completion menu")
  if inline then
    map(keys.accept, function() -- the key itself when there is no ghost text
      return vim.lsp.inline_completion.get() and "" or keys.accept
    end, "accept ghost text", true)
    map(keys.next, function()
      vim.lsp.inline_completion.select({ count = 1 })
    end, "next candidate")
    map(keys.prev, function()
      vim.lsp.inline_completion.select({ count = -1 })
    end, "previous candidate")
  end
end

--- Start (or reuse) the language server of the buffer's repository and attach the buffer.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local path = vim.api.nvim_buf_get_name(bufnr)
  if path == "" or vim.bo[bufnr].buftype ~= "" or #M.clients(bufnr) > 0 then
    return
  end
  local filetypes = M.config.filetypes
  if filetypes and not vim.tbl_contains(filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local full = vim.fn.fnamemodify(path, ":p")
  local root = M.root(full)
  vim.lsp.start({
    name = NAME,
    cmd = server_cmd(root),
    cmd_cwd = root or vim.fs.dirname(full),
    root_dir = root, -- one server per repository: buffers of the same root share it
    on_attach = on_attach,
  }, { bufnr = bufnr })
end

--- Open the completion menu with the daemon's candidates (insert mode), like <C-x><C-o>.
function M.complete()
  local keys = vim.api.nvim_replace_termcodes("<C-x><C-o>", true, false, true)
  vim.api.nvim_feedkeys(keys, "n", false)
end

function M.setup(opts)
  if vim.fn.has("nvim-0.8") == 0 then
    vim.notify("completiond: Neovim 0.8 or newer is needed", vim.log.levels.ERROR)
    return
  end
  opts = opts or {}
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts)
  for _, list in ipairs({ "cmd", "filetypes", "root_markers" }) do -- replaced, not merged
    if opts[list] ~= nil then
      M.config[list] = opts[list]
    end
  end
  group = vim.api.nvim_create_augroup("completiond", { clear = true })
  vim.api.nvim_create_autocmd("BufEnter", { -- the buffer :checkhealth reports on
    group = group,
    callback = function(args)
      if vim.bo[args.buf].buftype == "" then
        M.last_buffer = args.buf
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile", "FileType" }, {
    group = group,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do -- buffers opened before setup()
    if vim.api.nvim_buf_is_loaded(bufnr) then
      M.attach(bufnr)
    end
  end
end

return M
