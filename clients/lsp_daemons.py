"""Which daemon serves an editor's document, and starting one when none answers.

`completiond lsp` sends each document to the daemon of the repository it belongs to: its git work
tree, else a directory the editor opened. When no daemon answers there, the bridge starts one,
detached (its own session, its output in `<store>/daemon.log`), told to stop after a quiet
period. A lock file in the store makes the start exclusive: of several bridges starting at once
for one repository, one starts the daemon and the others wait for it to answer, then connect.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from completiond.core.durable import FILE_MODE, open_private_log, private_dir
from completiond.core.errors import CompletiondError
from completiond.core.git import git_output
from completiond.core.locations import check_socket, default_store_dir, repo_root

DEFAULT_IDLE_EXIT_MIN = 30.0  # a daemon the bridge started stops after this long unused
DEFAULT_MAX_FILES = 50_000  # a larger repository gets no daemon: training and indexing it is slow
START_WAIT_S = 60.0  # a daemon answers on its socket before it trains: imports, index loading
LOCK_FILE = "daemon-start.lock"
LOG_FILE = "daemon.log"


class StartFailed(CompletiondError):
    """The daemon the bridge started did not come to answer."""


def find_repository(path: Path, opened: Sequence[Path]) -> Path | None:
    """The root of the git work tree holding `path`, else the deepest of the directories the
    editor opened (`opened`) that holds it; None when neither does."""
    directory = path.parent
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent  # a new file in a new directory: ask the nearest one there
    root = repo_root(directory)
    if (root / ".git").exists():
        return root
    resolved = path.resolve()
    holding = [folder for folder in opened if resolved.is_relative_to(folder.resolve())]
    return max(holding, key=lambda folder: len(folder.resolve().parts), default=None)


def count_files(root: Path, limit: int) -> int:
    """The repository's files: git's (tracked, and untracked not ignored), else those on disk
    outside hidden directories, counted up to just past `limit` (a home directory is huge)."""
    listed = git_output(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        return listed.count(b"\0")
    count = 0
    for _, directories, files in os.walk(root):
        directories[:] = [d for d in directories if not d.startswith(".")]
        count += len(files)
        if count > limit:
            break
    return count


def answers(path: Path) -> bool:
    """Whether a daemon listens on the Unix socket `path` (of this user's: check_socket)."""
    if not path.exists():
        return False
    check_socket(path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@dataclass(frozen=True)
class Starter:
    """How the bridge starts a repository's daemon."""

    idle_exit_minutes: float = DEFAULT_IDLE_EXIT_MIN
    serve_args: tuple[str, ...] = ()  # more `serve` options, e.g. a model size

    def command(self, root: Path) -> list[str]:
        return [
            sys.executable, "-m", "completiond.clients.cli", "serve", "--repo", str(root),
            "--idle-exit", f"{self.idle_exit_minutes:g}", "--started-by", "lsp",
            *self.serve_args,
        ]  # fmt: skip

    def ensure(self, root: Path, socket_path: Path, wait_s: float = START_WAIT_S) -> bool:
        """Make a daemon answer on `socket_path` for `root`: True when this call started it,
        False when one answered already. Raises StartFailed when the started one did not come up
        within `wait_s`."""
        store = private_dir(default_store_dir(root))
        with _exclusive(store / LOCK_FILE, wait_s):
            if answers(socket_path):
                return False
            process = self._spawn(root, store / LOG_FILE)
            try:
                _wait_until_answering(process, socket_path, store / LOG_FILE, wait_s)
            finally:
                # Reaped when it exits (its idle exit): no zombie stays while the editor runs.
                threading.Thread(target=process.wait, name="completiond-reap", daemon=True).start()
        return True

    def _spawn(self, root: Path, log_path: Path) -> subprocess.Popen[bytes]:
        """The daemon in a session of its own, so that it outlives the editor (and its Ctrl-C)."""
        with open_private_log(log_path) as log:
            return subprocess.Popen(
                self.command(root),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=log_path.parent,
                start_new_session=True,
            )


@contextlib.contextmanager
def _exclusive(path: Path, wait_s: float) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600); another holder is waited for, up to
    `wait_s` seconds (it starts a daemon meanwhile, which this caller then finds)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StartFailed(f"another process holds {path}") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _wait_until_answering(
    process: subprocess.Popen[bytes], socket_path: Path, log_path: Path, wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    while not answers(socket_path):
        if process.poll() is not None:
            raise StartFailed(f"the daemon exited at start; see {log_path}: {_last_line(log_path)}")
        if time.monotonic() > deadline:
            raise StartFailed(f"the daemon did not answer within {wait_s:g} s; see {log_path}")
        time.sleep(0.05)


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"
