"""When a daemon started with `serve --idle-exit MIN` stops by itself.

The editor bridge starts daemons on its own (`completiond lsp`); without a quiet-period exit they
would pile up, one per repository ever opened. A client call, or a training run in progress,
pushes the stop back: work under way finishes, and a daemon in use stays.
"""

from __future__ import annotations

import threading
import time


class IdleClock:
    """The time of the last activity, and the deadline it sets (none when `minutes` is None)."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def touch(self) -> None:
        """A client called, or training runs: the quiet period starts again."""
        with self._lock:
            self._last = time.monotonic()

    def seconds_left(self) -> float | None:
        """Seconds until the daemon should stop; None when it keeps running."""
        if self.minutes is None:
            return None
        with self._lock:
            return self._last + self.minutes * 60 - time.monotonic()

    def stops_unix(self) -> float:
        """The deadline as a wall-clock time (seconds since the epoch); 0 when there is none."""
        left = self.seconds_left()
        return 0.0 if left is None else time.time() + max(0.0, left)
