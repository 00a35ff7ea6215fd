"""An index of the repository's text, to find where a piece of code occurs again.

Code repeats itself: a line being typed often continues as a line elsewhere in the repository
does (the same call, import, signature or idiom). The index lets the daemon find every place
where the text before the cursor occurs and read what followed there, in microseconds and
without the model.

It is a suffix array restricted to token starts: the positions of the indexed text where a
word, a punctuation character or a line starts, sorted by the `key_chars` characters that follow
each. All occurrences of a piece of text starting at a token start are then one contiguous range
of that array, found by two binary searches. Every training run builds it (the training
process can afford the sort's memory), whether its model is promoted or not, and replaces the
store's `index.npz` atomically; serving only loads and searches it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .durable import write_atomically

INDEX_FILE = "index.npz"  # in the model store: the text (UTF-8) and the sorted positions

# A token starts at a line break, at the first character of a word, and at any other visible
# character (punctuation, an operator).
_TOKEN_START = re.compile(r"\n|(?<!\w)\w|[^\w\s]")


@dataclass
class IndexConfig:
    key_chars: int = 48  # characters compared when sorting: longer pieces are checked one by one
    max_chars: int = 16_000_000  # text indexed at most (the training process sorts it in memory)


class RepoIndex:
    """Sorted token-start positions of `text`; `text` begins with a line break."""

    def __init__(self, text: str, positions: np.ndarray, key_chars: int) -> None:
        self.text = text
        self.positions = positions
        self.key_chars = key_chars

    @classmethod
    def build(cls, texts: Iterable[str], config: IndexConfig | None = None) -> RepoIndex:
        """Index files' texts (each ending with a line break), up to `max_chars` in all."""
        config = config or IndexConfig()
        pieces = ["\n"]
        size = 1
        for text in texts:
            if size + len(text) > config.max_chars:
                break
            pieces.append(text)
            size += len(text)
        text = "".join(pieces)
        key = config.key_chars
        starts = [m.start() for m in _TOKEN_START.finditer(text)]
        starts.sort(key=lambda p: text[p : p + key])
        dtype = np.int32 if len(text) < 2**31 else np.int64  # half the memory when it fits
        return cls(text, np.asarray(starts, dtype=dtype), key)

    def save(self, path: Path) -> None:
        """Write to `path` atomically (a reader sees the old index or the new one)."""
        write_atomically(
            path,
            lambda f: np.savez(
                f,
                text=np.frombuffer(self.text.encode("utf-8", "surrogatepass"), np.uint8),
                positions=self.positions,
                key_chars=np.array(self.key_chars),
            ),
        )

    @classmethod
    def load(cls, path: Path) -> RepoIndex:
        """Raises OSError or ValueError for a missing, unreadable or inconsistent file."""
        with np.load(path, allow_pickle=False) as data:
            text = data["text"].tobytes().decode("utf-8", "surrogatepass")
            positions = data["positions"]
            key_chars = int(data["key_chars"])
        if positions.ndim != 1 or key_chars < 1:
            raise ValueError(f"{path}: not a repository index")
        if positions.size and not 0 <= int(positions.min()) <= int(positions.max()) < len(text):
            raise ValueError(f"{path}: positions outside the indexed text")
        return cls(text, positions, key_chars)

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

    def continuations(self, piece: str, limit: int) -> dict[str, int]:
        """What follows `piece` up to the end of its line, with counts ("": the line ends there,
        blanks at most). Past `limit` occurrences, an evenly spaced sample of them is read (the
        range is sorted by what follows, so its first ones would be a biased sample) and the
        counts are scaled from it."""
        lo, hi = self.span(piece)
        step = max(1, -(-(hi - lo) // limit))
        text, n = self.text, len(piece)
        counts: dict[str, int] = {}
        for p in self.positions[lo:hi:step].tolist():
            if n > self.key_chars and not text.startswith(piece, p):
                continue
            end = text.find("\n", p + n)
            rest = text[p + n : end if end >= 0 else len(text)].rstrip()
            counts[rest] = counts.get(rest, 0) + step
        return counts
