"""Counts of what became of suggestions, per client: shown, accepted, partly accepted, dismissed.

Kept in the daemon's memory and in `<store>/feedback.json` (loaded at start, written at stop), so
`completiond status` can show acceptance rates. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from completiond.core.errors import InvalidRequest

log = logging.getLogger(__name__)

EVENTS = ("shown", "accepted", "partially_accepted", "dismissed")
MAX_CLIENTS = 64  # distinct client names kept; a misbehaving client cannot grow memory
MAX_CLIENT_CHARS = 32


class FeedbackCounts:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = self._load()

    def _load(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text())
            return {
                str(client): {e: int(counts.get(e, 0)) for e in EVENTS}
                for client, counts in data.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}

    def add(self, client: str, event: str, count: int = 1) -> None:
        if not client or len(client) > MAX_CLIENT_CHARS or not client.isprintable():
            raise InvalidRequest(f"client must be 1 to {MAX_CLIENT_CHARS} printable characters")
        if event not in EVENTS:
            raise InvalidRequest(f"event must be one of {', '.join(EVENTS)}")
        if not 1 <= count <= 1000:
            raise InvalidRequest(f"count must be between 1 and 1000, got {count}")
        with self._lock:
            if client not in self._counts and len(self._counts) >= MAX_CLIENTS:
                raise InvalidRequest(f"more than {MAX_CLIENTS} distinct clients reported")
            counts = self._counts.setdefault(client, dict.fromkeys(EVENTS, 0))
            counts[event] += count

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {client: dict(counts) for client, counts in sorted(self._counts.items())}

    def save(self) -> None:
        """Written at daemon stop; a store that vanished or a full disk only loses the counts."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.snapshot(), indent=2))
        except OSError as exc:
            log.warning("could not save feedback counts to %s: %s", self.path, exc)
