"""Where a repository's model store and daemon socket live.

Both are derived from the repository's root, so that every client started anywhere inside the
repository finds the same daemon and store without flags. Torch-free (clients import it).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

from .errors import UnsafePath
from .git import git_output


def repo_root(start: Path) -> Path:
    """The top of the git work tree containing `start`, else the nearest parent with `.git`,
    else `start` itself (a directory that is not under version control)."""
    start = start.resolve()
    top = git_output(start, "rev-parse", "--show-toplevel", timeout_s=10)
    if top and top.strip():
        return Path(os.fsdecode(top.strip())).resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def repo_key(root: Path) -> str:
    """A short, filesystem-safe, collision-resistant name for the repository."""
    root = root.resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name)[:24] or "root"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return f"{name}-{digest}"


def default_store_dir(root: Path) -> Path:
    """`$XDG_CACHE_HOME/completiond/<key>` (or ~/.cache): never inside the repository."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "completiond" / repo_key(root)


def socket_base_dir() -> Path:
    """`$XDG_RUNTIME_DIR/completiond` (private to the user by the spec), else
    `completiond-<uid>` in the platform's temporary directory (per user on macOS)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "completiond"
    return Path(tempfile.gettempdir()) / f"completiond-{os.getuid()}"


def default_socket_path(root: Path) -> Path:
    """The repository's socket in `socket_base_dir()`. Short on purpose: Unix socket paths are
    limited to about 100 bytes."""
    return socket_base_dir() / f"{repo_key(root)}.sock"


def claim_socket_dir(directory: Path) -> None:
    """Make the daemon's socket directory usable: created 0700 when missing; refused when it is
    a symlink or another user's (someone made it first to catch the socket, as tmux and
    ssh-agent refuse). Only the default directory, or one the daemon creates, is made private:
    `--socket ~/d.sock` must not lock the home directory."""
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        os.chmod(directory, 0o700)
        return
    if directory == socket_base_dir():
        info = directory.lstat()
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"socket directory {directory} is not a plain directory")
        if info.st_uid != os.getuid():
            raise UnsafePath(
                f"socket directory {directory} belongs to user id {info.st_uid}, not you: "
                "someone may be trying to intercept completions; remove it or set XDG_RUNTIME_DIR"
            )
        os.chmod(directory, 0o700)


def check_socket(path: Path) -> None:
    """Before a client sends code to a socket: the socket is this user's, and its directory is
    this user's (or root's) and not writable by others unless sticky (like /tmp), so nobody else
    can have put it there or swap it."""
    try:
        info = path.lstat()
        parent = path.parent.lstat()
    except FileNotFoundError:
        return  # nothing to trust yet: connecting fails with "no daemon"
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafePath(f"{path} is not a socket of yours: refusing to send code to it")
    if parent.st_uid not in (os.getuid(), 0):
        raise UnsafePath(f"{path.parent} belongs to user id {parent.st_uid}, not you or root")
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        raise UnsafePath(f"{path.parent} is writable by others: its socket could be swapped")
