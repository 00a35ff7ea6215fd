"""Shell integration as a user meets it: each snippet parses, and real zsh, bash and fish inside
tmux insert the daemon's completion at the cursor, or change nothing and print nothing when no
daemon runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from completiond.clients.shell import SHELLS, snippet
from completiond.daemon.daemon import Daemon

SYNTAX_CHECK = {"zsh": ["zsh", "-n"], "bash": ["bash", "-n"], "fish": ["fish", "--no-execute"]}
# Interactive shells without the user's rc files, history or decorations.
SHELL_COMMAND = {
    "zsh": ["zsh", "-f"],
    "bash": ["bash", "--norc", "--noprofile"],
    "fish": ["fish", "--no-config", "--private"],
}
PROMPT = "$ "
PROMPT_SETUP = {
    "zsh": "PS1='$ '",
    "bash": "PS1='$ '",
    "fish": "function fish_prompt; printf '$ '; end; set -g fish_autosuggestion_enabled 0",
}
KEY = ["C-x", "C-l"]  # the snippets' default binding, ^X^L
PREFIX = "    if value is N"  # the fixture model completes it with `one:`
ZSH_AUTOSUGGESTIONS = Path("/usr/share/zsh-autosuggestions/zsh-autosuggestions.zsh")
WAIT_S = 20.0


def test_unknown_shell_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="powershell"):
        snippet("powershell")


@pytest.mark.parametrize("shell", SHELLS)
def test_snippet_is_valid_syntax(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"snippet.{shell}"
    path.write_text(snippet(shell))
    result = subprocess.run(
        [*SYNTAX_CHECK[shell], str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def last(lines: list[str]) -> str:
    """The last line, "" for an empty screen (bash blanks the line while a `bind -x` runs)."""
    return lines[-1] if lines else ""


class Terminal:
    """One interactive shell in a private tmux server, driven by keystrokes and read off the
    screen, as a user would."""

    def __init__(self, shell: str, env: dict[str, str]) -> None:
        self.shell = shell
        self.server = f"completiond-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.server, "-f", os.devnull, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
        ).stdout

    def start(self, setup: str) -> None:
        """Start the shell, run `setup` in it and clear the screen, so that the screen then
        holds the prompt alone."""
        command = shlex.join(SHELL_COMMAND[self.shell])
        self.tmux("new-session", "-d", "-x", "200", "-y", "50", command)
        self.type(f"{PROMPT_SETUP[self.shell]}; {setup}; echo READY")
        self.tmux("send-keys", "Enter")
        self.wait_for(lambda lines: "READY" in lines and last(lines) == PROMPT.rstrip())
        self.tmux("send-keys", "C-l")
        self.wait_for(lambda lines: lines == [PROMPT.rstrip()])

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def screen(self) -> list[str]:
        """The pane's lines, without trailing blanks and trailing empty lines."""
        lines = [line.rstrip() for line in self.tmux("capture-pane", "-p").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait_for(self, done: Callable[[list[str]], bool]) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        while True:
            lines = self.screen()
            if done(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.shell} screen after {WAIT_S:.0f} s:\n" + "\n".join(lines)
                )
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.server, "kill-server"],
            capture_output=True,
            timeout=10,
            env=self.env,
            check=False,
        )


@pytest.fixture
def terminal_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment: this venv's `completiond` first on PATH, a throwaway HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
        "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"],
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    if "TMUX_TMPDIR" in os.environ:
        env["TMUX_TMPDIR"] = os.environ["TMUX_TMPDIR"]
    return env


@contextmanager
def open_terminal(shell: str, env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    for program in ("tmux", shell):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    script = tmp_path / f"completiond.{shell}"
    script.write_text(snippet(shell))
    terminal = Terminal(shell, env)
    try:
        terminal.start(f"source {shlex.quote(str(script))}")
        yield terminal
    finally:
        terminal.close()


@pytest.fixture
def daemon_env(running_daemon: Daemon, terminal_env: dict[str, str]) -> dict[str, str]:
    """The terminal's environment, pointed at a running daemon by COMPLETIOND_SOCKET."""
    return {**terminal_env, "COMPLETIOND_SOCKET": str(running_daemon.server.config.socket_path)}


@pytest.fixture(params=SHELLS)
def served_terminal(
    request: pytest.FixtureRequest, daemon_env: dict[str, str], tmp_path: Path
) -> Iterator[Terminal]:
    """A shell with the snippet sourced and a running daemon."""
    with open_terminal(request.param, daemon_env, tmp_path) as terminal:
        yield terminal


@pytest.fixture(params=SHELLS)
def lone_terminal(
    request: pytest.FixtureRequest, terminal_env: dict[str, str], tmp_path: Path
) -> Iterator[Terminal]:
    """A shell with the snippet sourced and no daemon at COMPLETIOND_SOCKET."""
    env = {**terminal_env, "COMPLETIOND_SOCKET": str(tmp_path / "missing.sock")}
    with open_terminal(request.param, env, tmp_path) as terminal:
        yield terminal


def test_key_inserts_the_completion_at_the_end_of_the_line(served_terminal: Terminal) -> None:
    served_terminal.type(PREFIX)
    served_terminal.press(*KEY)
    lines = served_terminal.wait_for(lambda lines: last(lines).endswith("one:"))
    assert lines == [f"{PROMPT}{PREFIX}one:"]


def test_key_inserts_at_the_cursor_without_repeating_what_follows(
    served_terminal: Terminal,
) -> None:
    served_terminal.type(f"{PREFIX}:")
    served_terminal.press("Left", *KEY)
    served_terminal.type("@")  # shows where the cursor was left
    lines = served_terminal.wait_for(lambda lines: "@" in last(lines))
    assert lines == [f"{PROMPT}{PREFIX}one@:"]


def test_key_without_a_daemon_leaves_the_line_alone(lone_terminal: Terminal) -> None:
    lone_terminal.type(PREFIX)
    started = time.monotonic()
    lone_terminal.press(*KEY)
    lone_terminal.type("@")  # typed after the key: shows once the key's work is done
    lines = lone_terminal.wait_for(lambda lines: last(lines).endswith("@"))
    assert lines == [f"{PROMPT}{PREFIX}@"]
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("shell", SHELLS)
def test_key_is_read_from_the_environment(
    shell: str, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    with open_terminal(shell, {**daemon_env, "COMPLETIOND_KEY": "^[l"}, tmp_path) as terminal:
        terminal.type(PREFIX)
        terminal.press("M-l")  # Alt-L: Escape, then l
        lines = terminal.wait_for(lambda lines: last(lines).endswith("one:"))
        assert lines == [f"{PROMPT}{PREFIX}one:"]


def test_zsh_autosuggestions_strategy_suggests_the_completion(
    daemon_env: dict[str, str], tmp_path: Path
) -> None:
    if not ZSH_AUTOSUGGESTIONS.exists():
        pytest.skip(f"zsh-autosuggestions is not installed ({ZSH_AUTOSUGGESTIONS})")
    plugin = shlex.quote(str(ZSH_AUTOSUGGESTIONS))
    with open_terminal("zsh", daemon_env, tmp_path) as terminal:
        terminal.type(f"source {plugin}; ZSH_AUTOSUGGEST_STRATEGY=(completiond)")
        terminal.press("Enter", "C-l")
        terminal.wait_for(lambda lines: lines == [PROMPT.rstrip()])
        terminal.type(PREFIX)
        terminal.wait_for(lambda lines: lines == [f"{PROMPT}{PREFIX}one:"])  # after the cursor
        terminal.press("C-e")  # end-of-line accepts the suggestion
        terminal.type("@")
        assert terminal.wait_for(lambda lines: "@" in last(lines)) == [f"{PROMPT}{PREFIX}one:@"]
