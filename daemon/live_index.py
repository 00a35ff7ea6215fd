"""The repository index, kept up to date with every saved file.

A name or a line saved in one file should be offered in every other file within seconds, not
after the next retrain. The daemon therefore updates the index itself, file by file, with the
same rules as training (`read_files`: the file rules of core/files.py, the size limits,
secrets masked), without retraining and without reading the whole repository again:

- the full index (`<store>/index.npz`, built by `python -m completiond.core.index` in a child
  process) records which file each part of its text came from (`FileTable`);
- a changed file's lines are hidden in it (a flag per file, checked for the few occurrences a
  lookup reads), and the changed files' new texts are indexed apart in a small index, rebuilt at
  each change (cheap: it holds the changed files only, at most `max_chars`); a lookup adds both;
- once the files changed apart pass `max_files` or `max_chars` (a branch switch, a large
  refactoring), the full index is rebuilt in the child instead, and swapped in when done; the
  changes applied since it started stay apart.

What is served is always a consistent state (`_View`, replaced by one assignment). The changes
are written to `<store>/index-updates.json` (atomically and durably, owner-only, like the index)
before they are served, tied to the full index they apply to: a crash loses at most the batch
being applied, never the index. At start the daemon compares every training file's
modification time and size with what the index recorded (no file is read for that) and updates
the files that changed while it was not running.

Memory: the full index (its text and an int32 per token start, at most IndexConfig.max_chars
characters), the files changed apart and their small index (at most `max_chars` characters each),
and, for a moment after a rebuild, the previous full index; the rebuild's sort happens in the
child. The confidence weights (calibration.py) describe how matches behave, not which lines
exist, so they stay valid as files change: a lookup finds exactly what an index rebuilt from the
same files would (single-line contexts; tests/test_live_index.py checks it), so the same
features reach the same weights. After a branch switch the weights fitted on the old branch
serve until the one retrain it causes refits them.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from completiond.core.child import index_command
from completiond.core.corpus import fingerprint, read_files
from completiond.core.durable import private_dir, write_text_atomically
from completiond.core.files import candidate_paths, path_exclusion
from completiond.core.index import INDEX_FILE, RepoIndex, Stamp, file_stamp, load_usable

log = logging.getLogger(__name__)

INDEX_UPDATES_FILE = "index-updates.json"  # in the model store: files changed since the build


@dataclass
class LiveIndexConfig:
    quiet_s: float = 0.2  # file events are applied once none came for this long
    max_delay_s: float = 2.0  # ... or this long after the first of them (a steady stream)
    max_files: int = 200  # files indexed apart from the full index before it is rebuilt
    max_chars: int = 500_000  # ... and their characters
    nice: int = 10  # the rebuild child's priority offset


@dataclass(frozen=True)
class _Update:
    text: str | None  # None: removed, or no longer a training file
    stamp: Stamp | None  # before it was read; None when it is gone
    batch: int  # the batch that applied it: a rebuild started after that batch has it


@dataclass(frozen=True)
class Freshness:
    updated_unix: float  # when the served index last changed (0: there is none yet)
    pending_files: int  # files changed on disk and not in the served index yet
    updated_files: int  # files indexed apart since the last full build
    rebuilds: int  # full builds started since the daemon started
    rebuilding: bool
    error: str  # why the last update or rebuild failed ("" when it did not)


@dataclass(frozen=True)
class _View:
    """One consistent state to search: the full index with the changed files hidden, plus the
    changed files' own index."""

    base: RepoIndex | None
    hidden: np.ndarray | None  # per file of base's FileTable (and one for none)
    apart: RepoIndex | None
    indexed_chars: int
    indexed_places: int

    def continuations(self, piece: str, limit: int) -> dict[str, int]:
        counts = {} if self.base is None else self.base.continuations(piece, limit, self.hidden)
        if self.apart is not None:
            for rest, n in self.apart.continuations(piece, limit).items():
                counts[rest] = counts.get(rest, 0) + n
        return counts


def line_change(old: str | None, new: str | None) -> int:
    """Characters of the lines added or removed between two texts (a moved line counts none)."""
    before = Counter((old or "").splitlines(keepends=True))
    after = Counter((new or "").splitlines(keepends=True))
    return sum(len(line) * n for line, n in ((before - after) + (after - before)).items())


def _view(base: RepoIndex | None, updates: dict[str, _Update]) -> _View:
    texts = {p: u.text for p, u in updates.items() if u.text is not None}
    apart = RepoIndex.build_files(texts, {}) if texts else None
    chars = apart.indexed_chars if apart else 0
    places = apart.indexed_places if apart else 0
    if base is None:
        return _View(None, None, apart, chars, places)
    if apart is not None:  # counted as in one index: one leading and one last line break
        chars, places = chars - 1, places - 1
    if base.files is None:  # an index from before file tables: nothing can be hidden in it
        return _View(base, None, apart, chars + base.indexed_chars, places + base.indexed_places)
    table = base.files
    hidden = np.zeros(len(table.paths) + 1, dtype=bool)
    hidden[[i for p in updates if (i := base.file_id(p)) is not None]] = True
    chars += base.indexed_chars - int(table.lengths()[hidden[:-1]].sum())
    places += base.indexed_places - int(table.places[hidden].sum())
    return _View(base, hidden, apart, chars, places)


class LiveIndex:
    """The store's index and the changes since its last full build; searched as one."""

    def __init__(self, repo: Path, store_dir: Path, config: LiveIndexConfig | None = None) -> None:
        self.repo = repo
        self.path = store_dir / INDEX_FILE
        self.updates_path = store_dir / INDEX_UPDATES_FILE
        self.config = config or LiveIndexConfig()
        self.rebuilds = 0
        self._error = ""
        self._base: RepoIndex | None = None
        self._updates: dict[str, _Update] = {}
        self._view = _View(None, None, None, 0, 0)
        self._updated_unix = 0.0
        self._changed_chars = 0  # of lines added or removed since the last retrain started
        self._batches = 0
        self._lock = threading.Condition()
        self._pending: set[str] = set()  # changed paths (files or directories) not applied yet
        self._first_event = self._last_event = 0.0
        self._applying: set[str] = set()
        self._deferred: set[str] = set()  # changed while a rebuild runs, too many to add apart
        self._stale: set[str] = set()  # covered by a rebuild that failed: retried with the next
        self._rebuilding: set[str] | None = None  # what the running rebuild covers
        self._rebuild_batch = 0  # updates of batches up to this one are in the running rebuild
        self._rebuilt: tuple[bool, str] | None = None  # a rebuild ended: ok, message
        self._child: subprocess.Popen[bytes] | None = None
        self._check_disk = False
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="index", daemon=True)

    # --- what the retriever and the daemon ask ------------------------------------------------

    def continuations(self, piece: str, limit: int) -> dict[str, int]:
        return self._view.continuations(piece, limit)

    @property
    def indexed_chars(self) -> int:
        return self._view.indexed_chars

    @property
    def indexed_places(self) -> int:
        return self._view.indexed_places

    def freshness(self) -> Freshness:
        with self._lock:
            waiting = self._pending | self._applying | self._deferred | self._stale
            return Freshness(
                self._updated_unix,
                len(waiting | (self._rebuilding or set())),
                len(self._updates),
                self.rebuilds,
                self._rebuilding is not None,
                self._error,
            )

    def fingerprint(self) -> str | None:
        """The corpus fingerprint of the files as indexed (corpus.fingerprint), without reading
        them; None while changes wait or when the index does not hold every file."""
        with self._lock:
            if self._pending or self._applying or self._deferred or self._stale:
                return None
            if self._rebuilding is not None or self._check_disk:
                return None
            base, updates = self._base, dict(self._updates)
        if base is None or base.files is None or not base.files.complete:
            return None
        texts = base.file_texts()
        for path, update in updates.items():
            if update.text is None:
                texts.pop(path, None)
            else:
                texts[path] = update.text
        return fingerprint(texts)

    @property
    def changed_chars(self) -> int:
        """Characters of lines added or removed in the indexed files since the last retrain
        started (a rebuild counts its files as rewritten whole)."""
        return self._changed_chars

    def retrain_started(self) -> None:
        """Count changes from now on."""
        with self._lock:
            self._changed_chars = 0
            self._save_updates()

    # --- life cycle -----------------------------------------------------------------------------

    def load(self) -> None:
        """Serve the stored index and the changes recorded since its build (before listening)."""
        base = load_usable(self.path)
        with self._lock:
            self._set_base(base, self._load_updates(base))

    def start(self) -> None:
        """Bring the index up to date with the disk in the background, then follow changes."""
        self.check_disk()
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()  # its index file is written atomically: the old one stays
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def changed(self, path: str) -> None:
        """A file or directory (POSIX, relative to the repository) changed on disk."""
        with self._lock:
            now = time.monotonic()
            if not self._pending:
                self._first_event = now
            self._last_event = now
            self._pending.add(path)
            self._lock.notify_all()

    def check_disk(self) -> None:
        """Compare every training file's modification time and size with the index's, and
        update those that differ (at start; after a training run, for a repository not watched)."""
        with self._lock:
            self._check_disk = True
            self._lock.notify_all()

    # --- the worker ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                work = self._next()
            if work is None:
                return
            kind, paths = work
            try:
                if kind == "rebuilt":
                    self._finish_rebuild()
                elif kind == "disk":
                    self._compare_disk()
                else:
                    self._apply(paths)
            except Exception as exc:  # never let one bad update end the updating
                log.exception("updating the repository index failed")
                with self._lock:
                    self._error = f"updating the index failed: {exc}"
                    self._stale |= paths
            finally:
                with self._lock:
                    self._applying = set()

    def _next(self) -> tuple[str, set[str]] | None:
        """Under the lock: wait for the next thing to do."""
        while not self._stopping:
            if self._rebuilt is not None:
                return "rebuilt", set()
            if self._check_disk and self._rebuilding is None:  # else: against the new one
                return "disk", set()
            if self._pending:
                due = min(
                    self._last_event + self.config.quiet_s,
                    self._first_event + self.config.max_delay_s,
                )
                wait = due - time.monotonic()
                if wait <= 0:
                    batch = self._pending | self._stale
                    self._pending, self._stale = set(), set()
                    self._applying = batch
                    return "changed", batch
                self._lock.wait(wait)
            else:
                self._lock.wait()
        return None

    def _compare_disk(self) -> None:
        with self._lock:
            self._check_disk = False
            base, updates = self._base, dict(self._updates)
        if base is None or base.files is None:
            with self._lock:
                self._start_rebuild(set())
            return
        known = _stamps(base) | {p: u.stamp for p, u in updates.items()}
        listed = {p for p in candidate_paths(self.repo) if path_exclusion(p) is None}
        changed = {p for p in listed if file_stamp(self.repo / p) != known.get(p)}
        changed |= {p for p, s in known.items() if s is not None and p not in listed}
        if changed:
            log.info("%d files changed since the index was written: updating it", len(changed))
            for path in sorted(changed):
                self.changed(path)

    def _apply(self, batch: set[str]) -> None:
        """Index the changed files apart, or rebuild the whole index when they are too many."""
        with self._lock:
            base, updates = self._base, self._updates
            rebuilding = self._rebuilding is not None
        if base is None or base.files is None:
            with self._lock:
                if rebuilding:
                    self._deferred |= batch
                else:
                    self._start_rebuild(batch)
            return
        files = set(batch)
        if any(not (self.repo / p).is_file() for p in batch):  # a directory, or removed
            files |= {p for p in (*base.files.paths, *updates) if _under(p, batch)}
        if self._too_many(updates, files):
            with self._lock:
                if rebuilding:
                    self._deferred |= batch
                else:
                    self._changed_chars += self._estimated_change(base, updates, files)
                    self._start_rebuild(batch)
            return
        stamps = {p: file_stamp(self.repo / p) for p in files}  # before reading
        texts, _ = read_files(self.repo, only=sorted(batch))
        changed = 0
        new = dict(updates)
        with self._lock:
            number = self._batches = self._batches + 1
        for path in files | texts.keys():
            text = texts.get(path)
            old = new[path].text if path in new else _file_text(base, path)
            if text == old:
                continue
            changed += line_change(old, text)
            stamp = stamps.get(path) or file_stamp(self.repo / path)
            if text == _file_text(base, path):
                new.pop(path, None)  # back as the full index has it
            else:
                new[path] = _Update(text, stamp, number)
        if not changed:
            return
        view = _view(base, new)  # outside the lock: requests go on with the previous view
        with self._lock:  # only this thread replaces the base: `base` is still the one served
            self._changed_chars += changed
            self._error = ""
            self._updates = new
            self._save_updates()
            self._view = view
            self._updated_unix = time.time()

    def _too_many(self, updates: dict[str, _Update], files: set[str]) -> bool:
        together = updates.keys() | files
        if len(together) > self.config.max_files:
            return True
        chars = sum(len(u.text or "") for p, u in updates.items() if p not in files)
        for path in files:
            stamp = file_stamp(self.repo / path)
            chars += stamp[1] if stamp else 0
        return chars > self.config.max_chars

    def _estimated_change(
        self, base: RepoIndex, updates: dict[str, _Update], files: set[str]
    ) -> int:
        """Characters changed by a batch too large to read here: as if every file in it was
        rewritten (the retrain it leads to gets the whole budget anyway)."""
        total = 0
        for path in files:
            old = updates[path].text if path in updates else _file_text(base, path)
            stamp = file_stamp(self.repo / path)
            total += len(old or "") + (stamp[1] if stamp else 0)
        return total

    # --- rebuilds -----------------------------------------------------------------------------

    def _start_rebuild(self, covered: set[str]) -> None:
        """Under the lock: build the whole index again in a child process."""
        if self._stopping:
            return
        command = index_command("--repo", str(self.repo), "--out", str(self.path),
                                "--nice", str(self.config.nice))  # fmt: skip
        log.info("rebuilding the repository index (%d files changed)", len(covered))
        self._child = subprocess.Popen(
            command,
            cwd=private_dir(self.path.parent),  # never the repository (see core/child.py)
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.rebuilds += 1
        self._rebuilding = set(covered)
        self._rebuild_batch = self._batches
        threading.Thread(target=self._wait_rebuild, args=(self._child,), daemon=True).start()

    def _wait_rebuild(self, child: subprocess.Popen[bytes]) -> None:
        _, err = child.communicate()
        message = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        with self._lock:
            self._rebuilt = (child.returncode == 0, message[0])
            self._lock.notify_all()

    def _finish_rebuild(self) -> None:
        with self._lock:
            (ok, message), self._rebuilt = self._rebuilt or (False, ""), None
            covered, self._rebuilding = self._rebuilding or set(), None
            self._child = None
            included = self._rebuild_batch
        base = load_usable(self.path) if ok else None
        if base is None or base.files is None:
            log.warning("rebuilding the repository index failed: %s", message or "unreadable")
            with self._lock:
                self._error = f"rebuilding the index failed: {message or 'unreadable'}"
                self._stale |= covered | self._deferred
                self._deferred = set()
            return
        with self._lock:
            later = {p: u for p, u in self._updates.items() if u.batch > included}
            self._set_base(base, later)
            self._save_updates()
            self._updated_unix = time.time()
            self._error = ""
            deferred, self._deferred = self._deferred, set()
        # Most files changed during the rebuild are in it as they are now (the rebuild's stamps
        # say so): only the others are applied again.
        again = _differing(self.repo, base, deferred)
        if again:
            for path in sorted(again):
                self.changed(path)

    # --- state --------------------------------------------------------------------------------

    def _set_base(self, base: RepoIndex | None, updates: dict[str, _Update]) -> None:
        """Under the lock: serve `base` with `updates` (those it has already are dropped)."""
        updates = {p: u for p, u in updates.items() if u.text != _file_text(base, p)}
        self._base, self._updates = base, updates
        self._view = _view(base, updates)
        if base is not None:
            self._updated_unix = max(self._updated_unix, base.built_unix)

    def _load_updates(self, base: RepoIndex | None) -> dict[str, _Update]:
        """The changes recorded for `base` (none for another build: a restart compares the
        files' stamps with the index instead)."""
        if base is None or not base.ident or not self.updates_path.exists():
            return {}
        try:
            data = json.loads(self.updates_path.read_text(encoding="utf-8"))
            if data.get("base") != base.ident:
                return {}
            self._changed_chars = int(data.get("changed_chars", 0))
            self._updated_unix = float(data.get("updated_unix", 0.0))
            return {
                path: _Update(entry["text"], tuple(entry["stamp"]) if entry["stamp"] else None, 0)
                for path, entry in data["files"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("index updates %s not used: %s", self.updates_path, exc)
            return {}

    def _save_updates(self) -> None:
        """Under the lock: record the changes durably before they are served."""
        if self._base is None or not self._base.ident:
            return
        data = {
            "base": self._base.ident,
            "changed_chars": self._changed_chars,
            "updated_unix": self._updated_unix,
            "files": {
                p: {"text": u.text, "stamp": list(u.stamp) if u.stamp else None}
                for p, u in self._updates.items()
            },
        }
        write_text_atomically(self.updates_path, json.dumps(data))


def _stamps(base: RepoIndex) -> dict[str, Stamp | None]:
    """The stamp of every file the full index knows (indexed or not)."""
    if base.files is None:
        return {}
    stamps = base.files.stamps.tolist()
    return {p: (m, s) for p, (m, s) in zip(base.files.paths, stamps, strict=True)}


def _differing(repo: Path, base: RepoIndex, paths: set[str]) -> set[str]:
    """The paths whose file is not as the full index recorded it (directories stay)."""
    known = _stamps(base)
    return {p for p in paths if (repo / p).is_dir() or file_stamp(repo / p) != known.get(p)}


def _under(path: str, changed: set[str]) -> bool:
    """Whether `path` is in one of the changed directories."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in changed for i in range(1, len(parts)))


def _file_text(base: RepoIndex | None, path: str) -> str | None:
    return None if base is None else base.file_text(path)
