"""Watches the repository and says when its training text may have changed.

Every file event passes the corpus's own path rules (`files.path_exclusion`: vendored, secret,
lock, generated and non-source files never count), and nothing under `.git/` counts. Once no
relevant event has come for `quiet_s`, and at least `min_interval_s` after the previous call,
`on_settled` runs once, so a burst of thousands of events (a branch switch, a formatter over the
tree) gives one call. The daemon then compares the corpus fingerprint with its model's, which
also filters out ignored files and saves that changed nothing.

Each relevant path (and each directory created, moved or removed outside `.git/` and vendored
trees) also goes to `on_path` at once: the daemon's index follows the files within seconds
(live_index.py batches them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from completiond.core.files import excluded_directory, path_exclusion

log = logging.getLogger(__name__)


@dataclass
class WatchConfig:
    enabled: bool = True
    quiet_s: float = 20.0  # no relevant change for this long before a retrain is considered
    min_interval_s: float = 300.0  # and at least this long since the previous one


class RepoWatcher(FileSystemEventHandler):
    def __init__(
        self,
        repo: Path,
        config: WatchConfig,
        on_settled: Callable[[], None],
        on_path: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.repo = repo
        self.config = config
        self.on_settled = on_settled
        self.on_path = on_path  # a relevant file or directory changed (POSIX, repo-relative)
        self.events_seen = 0  # relevant file events since start (for status)
        self._observer = Observer()
        self._changed = threading.Condition()
        self._last_event: float | None = None  # monotonic time of the newest unhandled event
        self._last_call = -float("inf")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)

    def start(self) -> None:
        self._observer.schedule(self, str(self.repo), recursive=True)
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._observer.stop()
        self._observer.join(timeout=5)

    def poke(self) -> None:
        """Consider the repository changed now (e.g. a retrain was busy and must be retried)."""
        with self._changed:
            self._last_event = time.monotonic()
            self._changed.notify_all()

    def _inside(self, path: str) -> str | None:
        """`path` relative to the repository (POSIX), or None outside it or under `.git/`."""
        rel = os.path.relpath(path, self.repo)
        if rel.startswith("..") or rel.split(os.sep, 1)[0] == ".git":
            return None
        return Path(rel).as_posix()

    def relevant(self, path: str) -> bool:
        rel = self._inside(path)
        return rel is not None and path_exclusion(rel) is None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if event.is_directory:
            for path in paths:
                rel = self._inside(path)
                if rel is not None and rel != "." and not excluded_directory(rel):
                    self.on_path(rel)
            return
        inside = [rel for p in paths if (rel := self._inside(p)) is not None]
        relevant = [rel for rel in inside if path_exclusion(rel) is None]
        if relevant:
            self.events_seen += 1
            self.poke()
        for rel in relevant:
            self.on_path(rel)

    def _loop(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                if self._last_event is None:
                    self._changed.wait()
                    continue
                due = max(
                    self._last_event + self.config.quiet_s,
                    self._last_call + self.config.min_interval_s,
                )
                wait = due - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                self._last_event = None
                self._last_call = time.monotonic()
            try:
                self.on_settled()
            except Exception:  # never let one bad check end the watching
                log.exception("checking the repository for changes failed")
