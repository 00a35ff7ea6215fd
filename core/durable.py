"""Private, durable, atomic files: everything the store holds is written through here.

The store holds the repository's text (the index) and models that replay it, so its directories
are 0700 and its files 0600 whatever the process umask. A file is written under a temporary name,
flushed to disk and renamed over the old one, and the directory is synced after the rename, so a
reader or a crash sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by this user only; an existing directory
    of this user's is made private too (stores created by older versions were 0755)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered through the umask
    if path.stat().st_uid == os.getuid():
        os.chmod(path, DIR_MODE)
    return path


def sync_dir(path: Path) -> None:
    """Make the names in `path` (a rename, a new file) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` puts into the file object it is given."""
    private_dir(path.parent)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    sync_dir(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def seal_dir(directory: Path) -> None:
    """Make a directory written by other code (the ONNX exporter, numpy) private and durable:
    every file 0600 and synced, then the directory itself."""
    os.chmod(directory, DIR_MODE)
    for path in directory.iterdir():
        os.chmod(path, FILE_MODE)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    sync_dir(directory)


def open_private_log(path: Path) -> BinaryIO:
    """A log file for writing, created (or truncated) readable by this user only."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an older log may have been created 0644
    return os.fdopen(fd, "wb")
