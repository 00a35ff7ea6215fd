"""Counts of what became of suggestions, per client: shown, accepted, partly accepted, dismissed.

Kept in the daemon's memory and in `<store>/feedback.json` (loaded at start; written privately
and atomically a little after each change and at stop, so a crash loses little), so `completiond
status` can show acceptance rates. Nothing leaves the machine. Client names are short and plain
(they are printed in terminals), and the number of clients kept is capped without letting a burst
of new names lock out the next: the client with the fewest events makes room and its counts go
to OTHER.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path

from completiond.core.durable import write_text_atomically
from completiond.core.errors import InvalidRequest

log = logging.getLogger(__name__)

EVENTS = ("shown", "accepted", "partially_accepted", "dismissed")
MAX_CLIENTS = 64  # distinct client names kept; a misbehaving client cannot grow memory
MAX_CLIENT_CHARS = 32
_CLIENT_NAME = re.compile(rf"[A-Za-z0-9._+-]{{1,{MAX_CLIENT_CHARS}}}")
OTHER = "other"  # the counts of clients dropped to make room for new ones
SAVE_AFTER_S = 30.0  # a change is written this long after it at the latest


class FeedbackCounts:
    def __init__(self, path: Path, save_after_s: float = SAVE_AFTER_S) -> None:
        self.path = path
        self.save_after_s = save_after_s
        self._lock = threading.Lock()  # guards the counts and the timer
        self._save_lock = threading.Lock()  # one writer at a time: the last snapshot wins
        self._timer: threading.Timer | None = None  # a save due, while one is
        self._counts: OrderedDict[str, dict[str, int]] = self._load()  # least recent first

    def _load(self) -> OrderedDict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text())
            return OrderedDict(
                (str(client), {e: int(counts.get(e, 0)) for e in EVENTS})
                for client, counts in data.items()
            )
        except FileNotFoundError:
            return OrderedDict()
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return OrderedDict()

    def add(self, client: str, event: str, count: int = 1) -> None:
        if not _CLIENT_NAME.fullmatch(client):
            raise InvalidRequest(
                f"client must be 1 to {MAX_CLIENT_CHARS} characters of A-Z a-z 0-9 . _ + -"
            )
        if event not in EVENTS:
            raise InvalidRequest(f"event must be one of {', '.join(EVENTS)}")
        if not 1 <= count <= 1000:
            raise InvalidRequest(f"count must be between 1 and 1000, got {count}")
        with self._lock:
            if client not in self._counts:
                while len(self._counts) >= MAX_CLIENTS:
                    self._make_room()
            counts = self._counts.setdefault(client, dict.fromkeys(EVENTS, 0))
            counts[event] += count
            self._counts.move_to_end(client)
            self._save_soon()

    def _make_room(self) -> None:
        """Fold the client with the fewest events (of those, the least recently seen) into OTHER:
        memory stays bounded, the totals stay right, and clients in real use keep their rows."""
        victim = min(
            (c for c in self._counts if c != OTHER), key=lambda c: sum(self._counts[c].values())
        )
        dropped = self._counts.pop(victim)
        other = self._counts.setdefault(OTHER, dict.fromkeys(EVENTS, 0))
        for event in EVENTS:
            other[event] += dropped[event]

    def _save_soon(self) -> None:
        """Have the counts written `save_after_s` from now, unless a save is due already."""
        if self._timer is None:
            self._timer = threading.Timer(self.save_after_s, self._save_due)
            self._timer.daemon = True
            self._timer.start()

    def _save_due(self) -> None:
        with self._lock:
            self._timer = None
        self.save()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {client: dict(counts) for client, counts in sorted(self._counts.items())}

    def save(self) -> None:
        """Written now (and at daemon stop), atomically and readable by the user only; a store
        that vanished or a full disk only loses the counts since the last save."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._save_lock:
            try:
                write_text_atomically(self.path, json.dumps(self.snapshot(), indent=2))
            except OSError as exc:
                log.warning("could not save feedback counts to %s: %s", self.path, exc)
