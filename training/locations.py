"""Where a repository's model store and daemon socket live.

Both are derived from the repository's root, so that every client started anywhere inside the
repository finds the same daemon and store without flags. Torch-free (clients import it).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path


def repo_root(start: Path) -> Path:
    """The top of the git work tree containing `start`, else the nearest parent with `.git`,
    else `start` itself (a directory that is not under version control)."""
    start = start.resolve()
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        pass
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


def default_socket_path(root: Path) -> Path:
    """`$XDG_RUNTIME_DIR/completiond/<key>.sock`, else `/tmp/completiond-<uid>/<key>.sock`.

    Short on purpose: Unix socket paths are limited to about 100 bytes."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime) / "completiond"
    else:
        base = Path("/tmp") / f"completiond-{os.getuid()}"
    return base / f"{repo_key(root)}.sock"
