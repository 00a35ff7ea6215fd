"""Git, asked about a repository that may not be trusted.

A repository's own `.git/config` can name programs that git runs during read-only commands:
`core.fsmonitor` is run by `git ls-files`, so listing an untrusted branch's files would run its
code. Every call here turns that off on the command line, which overrides the repository's file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# Settings that make git run a program named by the repository, each switched off.
_NO_REPOSITORY_PROGRAMS = ("-c", "core.fsmonitor=false")


def git_output(root: Path, *args: str, timeout_s: float = 60.0) -> bytes | None:
    """Standard output of `git -C root ARGS`, or None when git is missing or fails."""
    command = ["git", "-C", str(root), *_NO_REPOSITORY_PROGRAMS, *args]
    try:
        result = subprocess.run(
            command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None
