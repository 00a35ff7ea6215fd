"""An index of the repository's text, to find where a piece of code occurs again.

Code repeats itself: a line being typed often continues as a line elsewhere in the repository
does (the same call, import, signature or idiom). The index lets the daemon find every place
where the text before the cursor occurs and read what followed there, in microseconds and
without the model.

It is a suffix array restricted to token starts: the positions of the indexed text where a
word, a punctuation character or a line starts, sorted by the `key_chars` characters that follow
each. All occurrences of a piece of text starting at a token start are then one contiguous range
of that array, found by two binary searches.

An index of the repository's files (`index_repository`) also records which file each part of
the text came from and each file's modification time and size when it was read (`FileTable`):
the daemon then masks a file that changed and indexes its new text apart (daemon/live_index.py),
and knows at start which files changed while it was not running. It builds that index in a child
process (`python -m completiond.core.index`: the sort's memory is not the daemon's) and
replaces the store's `index.npz` atomically; `completiond train` run alone writes it too.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .corpus import read_files
from .durable import write_atomically
from .files import candidate_paths, path_exclusion

log = logging.getLogger(__name__)

INDEX_FILE = "index.npz"  # in the model store: the text (UTF-8), the sorted positions, the files

# A token starts at a line break, at the first character of a word, and at any other visible
# character (punctuation, an operator).
_TOKEN_START = re.compile(r"\n|(?<!\w)\w|[^\w\s]")

Stamp = tuple[int, int]  # a file's (mtime_ns, size), taken before it was read; (0, 0): unknown


@dataclass
class IndexConfig:
    key_chars: int = 48  # characters compared when sorting: longer pieces are checked one by one
    max_chars: int = 16_000_000  # text indexed at most (the building process sorts it in memory)


class Searchable(Protocol):
    """What the retriever looks up: a RepoIndex, or the daemon's index kept up to date."""

    def continuations(self, piece: str, limit: int) -> dict[str, int]: ...

    @property
    def indexed_chars(self) -> int: ...

    @property
    def indexed_places(self) -> int: ...


def file_stamp(path: Path) -> Stamp | None:
    """`path`'s modification time and size (the link's own, for a symlink); None when gone."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@dataclass(frozen=True)
class FileTable:
    """Which file each part of an index's text came from.

    File i's text is text[offsets[i]:offsets[i + 1]]; the files known but not indexed (excluded
    by their content, or beyond `max_chars`) come last, with empty ranges, so that their stamps
    are known too. A position belongs to the file of the character after it (`owners`): a line
    break to the file whose line follows it, so that a lookup from a line's start (a context
    beginning with the line break before it) belongs to that line's file; the text's last line
    break belongs to no file (id len(paths))."""

    paths: tuple[str, ...]
    offsets: np.ndarray  # int64, len(paths) + 1; the last one is the text's length
    places: np.ndarray  # int64, len(paths) + 1: token starts each file owns (the last: no file's)
    stamps: np.ndarray  # int64, (len(paths), 2): each file's Stamp
    complete: bool  # False when files were left out for `max_chars`

    def owners(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, positions.astype(np.int64) + 1, side="right") - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _joined(texts: Iterable[str], max_chars: int) -> tuple[str, int]:
    """The texts concatenated after a line break, up to `max_chars` in all; and how many fit."""
    pieces = ["\n"]
    size = 1
    for text in texts:
        if size + len(text) > max_chars:
            break
        pieces.append(text)
        size += len(text)
    return "".join(pieces), len(pieces) - 1


def _token_starts(text: str) -> list[int]:
    return [m.start() for m in _TOKEN_START.finditer(text)]


def _sorted(text: str, starts: list[int], key: int) -> np.ndarray:
    starts = sorted(starts, key=lambda p: text[p : p + key])
    dtype = np.int32 if len(text) < 2**31 else np.int64  # half the memory when it fits
    return np.asarray(starts, dtype=dtype)


class RepoIndex:
    """Sorted token-start positions of `text`; `text` begins with a line break. An index of
    files (`build_files`) has their FileTable, an identity and the time it was built."""

    def __init__(
        self,
        text: str,
        positions: np.ndarray,
        key_chars: int,
        files: FileTable | None = None,
        ident: str = "",
        built_unix: float = 0.0,
    ) -> None:
        self.text = text
        self.positions = positions
        self.key_chars = key_chars
        self.files = files
        self.ident = ident  # names this build: the daemon's updates to it refer to it
        self.built_unix = built_unix
        self._file_ids: dict[str, int] | None = None  # path -> its row in `files`, when asked

    @property
    def indexed_chars(self) -> int:
        return len(self.text)

    @property
    def indexed_places(self) -> int:
        return len(self.positions)

    @classmethod
    def build(cls, texts: Iterable[str], config: IndexConfig | None = None) -> RepoIndex:
        """Index files' texts (each ending with a line break), up to `max_chars` in all."""
        config = config or IndexConfig()
        text, _ = _joined(texts, config.max_chars)
        return cls(text, _sorted(text, _token_starts(text), config.key_chars), config.key_chars)

    @classmethod
    def build_files(
        cls,
        texts: Mapping[str, str],
        stamps: Mapping[str, Stamp],
        config: IndexConfig | None = None,
    ) -> RepoIndex:
        """Index files' texts by path (each ending with a line break), up to `max_chars` in all,
        with their FileTable; `stamps` has every file considered, indexed or not (a file
        without one gets (0, 0): a restart reads it again)."""
        config = config or IndexConfig()
        text, kept = _joined(texts.values(), config.max_chars)
        indexed = list(texts)[:kept]
        rest = sorted({*texts, *stamps} - set(indexed))
        lengths = [len(texts[p]) for p in indexed] + [0] * len(rest)
        offsets = np.cumsum([1, *lengths], dtype=np.int64)
        starts = _token_starts(text)
        first = np.searchsorted(np.asarray(starts, dtype=np.int64), offsets - 1)
        places = np.diff(np.append(first, len(starts)))
        paths = (*indexed, *rest)
        table = FileTable(
            paths,
            offsets,
            places.astype(np.int64),
            np.array([stamps.get(p, (0, 0)) for p in paths], dtype=np.int64).reshape(-1, 2),
            kept == len(texts),
        )
        positions = _sorted(text, starts, config.key_chars)
        return cls(text, positions, config.key_chars, table, secrets.token_hex(8), time.time())

    def file_id(self, path: str) -> int | None:
        """`path`'s row in the FileTable; None when it has none."""
        if self.files is None:
            return None
        if self._file_ids is None:
            self._file_ids = {p: i for i, p in enumerate(self.files.paths)}
        return self._file_ids.get(path)

    def file_text(self, path: str) -> str | None:
        """`path`'s text here; None when it is not indexed (or there is no FileTable)."""
        i = self.file_id(path)
        if i is None or self.files is None:
            return None
        start, end = int(self.files.offsets[i]), int(self.files.offsets[i + 1])
        return self.text[start:end] if end > start else None

    def file_texts(self) -> dict[str, str]:
        """The indexed files' texts by path (not the ones known but left out)."""
        if self.files is None:
            return {}
        offsets = self.files.offsets.tolist()
        return {
            path: self.text[offsets[i] : offsets[i + 1]]
            for i, path in enumerate(self.files.paths)
            if offsets[i + 1] > offsets[i]
        }

    def save(self, path: Path) -> None:
        """Write to `path` atomically, durably and privately (durable.py)."""
        arrays: dict[str, np.ndarray] = {
            "text": np.frombuffer(self.text.encode("utf-8", "surrogatepass"), np.uint8),
            "positions": self.positions,
            "key_chars": np.array(self.key_chars),
            "ident": np.array(self.ident),
            "built_unix": np.array(self.built_unix),
        }
        if self.files is not None:
            names = "\0".join(self.files.paths).encode("utf-8", "surrogateescape")
            arrays |= {
                "file_paths": np.frombuffer(names, np.uint8),
                "file_offsets": self.files.offsets,
                "file_places": self.files.places,
                "file_stamps": self.files.stamps,
                "files_complete": np.array(self.files.complete),
            }
        write_atomically(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> RepoIndex:
        """Raises OSError or ValueError for a missing, unreadable or inconsistent file."""
        with np.load(path, allow_pickle=False) as data:
            text = data["text"].tobytes().decode("utf-8", "surrogatepass")
            positions = data["positions"]
            key_chars = int(data["key_chars"])
            ident = str(data["ident"]) if "ident" in data.files else ""
            built = float(data["built_unix"]) if "built_unix" in data.files else 0.0
            files = _load_table(data, len(text)) if "file_paths" in data.files else None
        if positions.ndim != 1 or key_chars < 1:
            raise ValueError(f"{path}: not a repository index")
        if positions.size and not 0 <= int(positions.min()) <= int(positions.max()) < len(text):
            raise ValueError(f"{path}: positions outside the indexed text")
        return cls(text, positions, key_chars, files, ident, built)

    def span(self, piece: str) -> tuple[int, int]:
        """[lo, hi) of `positions` where the text starts with piece[:key_chars] (a token start
        must begin `piece` for it to be found)."""
        key = piece[: self.key_chars]
        if not key:
            return 0, 0
        text, width = self.text, self.key_chars

        def at(p: np.int64) -> str:
            return text[p : p + width]

        lo = bisect.bisect_left(self.positions, key, key=at)
        after = key[:-1] + chr(ord(key[-1]) + 1) if ord(key[-1]) < 0x10FFFF else key + "\0"
        hi = bisect.bisect_left(self.positions, after, lo, key=at)
        return lo, hi

    def continuations(
        self, piece: str, limit: int, hidden: np.ndarray | None = None
    ) -> dict[str, int]:
        """What follows `piece` up to the end of its line, with counts ("": the line ends there,
        blanks at most). Past `limit` occurrences, an evenly spaced sample of them is read (the
        range is sorted by what follows, so its first ones would be a biased sample) and the
        counts are scaled from it. `hidden` (one flag per file of the FileTable, and one for
        none) leaves out the occurrences in files flagged: replaced or removed since."""
        lo, hi = self.span(piece)
        step = max(1, -(-(hi - lo) // limit))
        sample = self.positions[lo:hi:step]
        if hidden is not None and self.files is not None and sample.size:
            sample = sample[~hidden[self.files.owners(sample)]]
        text, n = self.text, len(piece)
        counts: dict[str, int] = {}
        for p in sample.tolist():
            if n > self.key_chars and not text.startswith(piece, p):
                continue
            end = text.find("\n", p + n)
            rest = text[p + n : end if end >= 0 else len(text)].rstrip()
            counts[rest] = counts.get(rest, 0) + step
        return counts


def _load_table(data: Mapping[str, np.ndarray], chars: int) -> FileTable:
    names = data["file_paths"].tobytes().decode("utf-8", "surrogateescape")
    paths = tuple(names.split("\0")) if names else ()
    offsets = data["file_offsets"].astype(np.int64)
    places = data["file_places"].astype(np.int64)
    stamps = data["file_stamps"].astype(np.int64).reshape(-1, 2)
    n = len(paths)
    if not (len(offsets) == len(places) == n + 1 and len(stamps) == n):
        raise ValueError("the file table does not match its files")
    if offsets[0] != 1 or offsets[-1] != chars or np.any(np.diff(offsets) < 0):
        raise ValueError("the file table does not match the indexed text")
    return FileTable(paths, offsets, places, stamps, bool(data["files_complete"]))


def index_repository(root: Path, config: IndexConfig | None = None) -> RepoIndex:
    """The index of the repository's files as training reads them (the same file rules and
    limits, secrets masked), with their FileTable."""
    listed = [p for p in candidate_paths(root) if path_exclusion(p) is None]
    stamps = {p: s for p in listed if (s := file_stamp(root / p)) is not None}  # before reading
    texts, _ = read_files(root)
    return RepoIndex.build_files(texts, stamps, config)


def main(argv: list[str] | None = None) -> int:
    """`python -m completiond.core.index --repo R --out FILE`: what the daemon runs to rebuild
    its index (numpy only, at lower priority)."""
    parser = argparse.ArgumentParser(prog="python -m completiond.core.index")
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the index file to replace")
    parser.add_argument("--nice", type=int, default=10, help="added to the process priority")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    # The daemon stops it with SIGTERM: unwind, so that no staging file is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    index_repository(args.repo).save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def load_usable(path: Path) -> RepoIndex | None:
    """The index at `path`; None when none was written yet or it is unreadable (logged):
    retrieval is an addition, never a reason not to serve."""
    if not path.exists():
        return None
    try:
        return RepoIndex.load(path)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        log.warning("repository index %s not used: %s", path, exc)
        return None
