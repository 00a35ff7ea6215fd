"""How every training child process is started: isolated from the repository it reads.

`python -m` puts the working directory first on the import path, and PYTHONPATH and the user's
site directory come next, so a `json.py` or a `numpy/` at the top of the served repository (an
untrusted branch, or numpy's own source tree) would be imported by the trainer. Isolated mode
(`-I`) keeps all three off the path, and the child runs in a directory of the daemon's own.
"""

from __future__ import annotations

import sys


def training_command(*args: str) -> list[str]:
    """The command line of a training child with these arguments."""
    return [sys.executable, "-I", "-m", "completiond.training", *args]


def index_command(*args: str) -> list[str]:
    """The command line of an index-building child (`core/index.py`), isolated the same way."""
    return [sys.executable, "-I", "-m", "completiond.core.index", *args]


def pretrain_command(*args: str) -> list[str]:
    """The command line of `completiond pretrain` with these arguments (an idle daemon's base
    build, `daemon/idle_base.py`), isolated the same way: it reads installed code and excludes
    the repository's by content, never importing either."""
    return [sys.executable, "-I", "-m", "completiond.clients.cli", "pretrain", *args]
