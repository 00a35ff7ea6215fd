"""A cache of the current file for the model's own lines: what followed the text being written
where it occurred before.

A character LSTM of a few hundred units forgets a name soon after it read it, and writes lines
that are right in form but wrong in their names; the file it completes has them. At every
character the beam search writes, the model's next-character probabilities are mixed with a
distribution read from the file (the text above the cursor and below its line): the characters
that followed the longest earlier occurrence of the text just before it (at most `max_context`
characters, at least 2), over its most recent occurrences, weighted L / (L + kappa) for a
context of L characters (a long context that occurred before is a surer guide than the model).
This is the continuous cache of neural language models, with exact context matches standing in
for the similarity of hidden states. `bench/quality.py --file-cache-kappa` measures weights.

A beam keeps a `Pointer` (the context's length and the places in the file its next character
is read from); writing a character keeps the places that go on with it, so copying a line costs
a comparison per place and character, and only a beam that leaves every place searches again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from completiond.core.tokenizer import CharTokenizer

META_KEY = "file_cache"  # the training run's choice in a bundle's meta (training/file_cache_fit.py)
_BOUNDARY = -1  # the id between the text above and below: no context crosses it, nothing follows


@dataclass
class FileCacheConfig:
    kappa: float = 4.0  # a context of L characters weighs L / (L + kappa); 0: the cache is off
    # Serve with the weight chosen for the model when it was trained (its meta's `file_cache`,
    # training/file_cache_fit.py) rather than `kappa`, where it has one.
    from_model: bool = True
    max_context: int = 32  # characters of the longest context looked for
    occurrences: int = 64  # most recent places of a context read
    above_chars: int = 50_000  # of the text above the cursor searched (a keystroke's cost bound)
    below_chars: int = 20_000  # ... and below the cursor's line

    @property
    def enabled(self) -> bool:
        return self.kappa > 0


def chosen_kappa(meta: dict[str, Any]) -> float | None:
    """The weight a model's training run chose for it (0: no cache); None when it chose none
    (trained before the choice, or no held-out line to choose on)."""
    kappa = meta.get(META_KEY, {}).get("kappa")
    return float(kappa) if isinstance(kappa, int | float) else None


@dataclass(frozen=True)
class Pointer:
    """Where a beam reads the file: the matched context's length (0: nowhere) and the indices in
    the cache's text of the characters that followed it."""

    length: int
    places: np.ndarray  # int64 [k]


NOWHERE = Pointer(0, np.zeros(0, np.int64))


class FileCache:
    """The current file as seen from the cursor, for one request."""

    def __init__(
        self, prefix: str, suffix: str, tokenizer: CharTokenizer, config: FileCacheConfig
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        above = prefix[-config.above_chars :]
        below_start = suffix.find("\n") + 1  # the cursor's own line is being written
        below = suffix[below_start : below_start + config.below_chars] if below_start else ""
        self.text = above + "\x00" + below  # NUL: no context of a suggestion contains it
        self.cursor = len(above)  # the boundary's index: the context ends here at first
        self.ids = tokenizer.encode(self.text).astype(np.int64)  # a copy: the boundary is set
        self.ids[self.cursor] = _BOUNDARY
        self.tail = above[-config.max_context :]

    def start(self) -> Pointer:
        """The pointer at the cursor, before anything is written."""
        return self._search(self.tail, self.config.max_context)

    def advance(self, pointer: Pointer, line: np.ndarray) -> Pointer:
        """The pointer after a beam wrote the last of `line` (its character ids so far): the
        places that went on with that character, else a new search (for at most one character
        more than the pointer's context: a longer one would contain a context that did not
        occur)."""
        places = pointer.places[self.ids[pointer.places] == line[-1]] + 1
        places = places[places < len(self.ids)]
        places = places[self.ids[places] != _BOUNDARY]
        longest = min(pointer.length + 1, self.config.max_context)
        if len(places):
            return Pointer(longest, places)
        written = self.tokenizer.decode(line[-self.config.max_context :])
        return self._search((self.tail + written)[-self.config.max_context :], max(2, longest))

    def mix(self, logp: np.ndarray, pointer: Pointer) -> np.ndarray:
        """[V] log-probabilities of the next character: the model's `logp` mixed with the
        characters that followed the pointer's places (unchanged where it points nowhere)."""
        if not pointer.length:
            return logp
        vocab = len(logp)
        counts = np.bincount(self.ids[pointer.places], minlength=vocab)[:vocab]
        weight = pointer.length / (pointer.length + self.config.kappa)
        mixed = (1 - weight) * np.exp(logp) + weight * counts / len(pointer.places)
        with np.errstate(divide="ignore"):  # a character neither gives has probability 0
            return np.log(mixed)

    def _search(self, context: str, longest: int) -> Pointer:
        """The longest end of `context` (2 to `longest` characters) that occurs in the text,
        with the places after its most recent occurrences above the cursor, then the nearest
        below. Tried from the shortest up: a short context is found near the cursor at once, a
        longer one is often the same place one character earlier, and only the first that does
        not occur costs a search of the whole text."""
        found, at = 0, -1
        for length in range(2, min(longest, len(context)) + 1):
            at = self._where(context[-length:], at)
            if at < 0:
                break
            found = length
        if not found:
            return NOWHERE
        return Pointer(found, self._places(context[-found:]))

    def _where(self, piece: str, shorter_at: int) -> int:
        """Where `piece` occurs followed by a character, above the cursor or below its line (-1:
        nowhere); `shorter_at` is where piece[1:] does (-1: unknown), checked first."""
        before = shorter_at - 1
        if before >= 0 and before != self.cursor and self.text[before] == piece[0]:
            return before
        at = self.text.rfind(piece, 0, self.cursor - 1)
        return at if at >= 0 else self.text.find(piece, self.cursor + 1, len(self.text) - 1)

    def _places(self, piece: str) -> np.ndarray:
        found: list[int] = []
        limit = self.config.occurrences
        at = self.text.rfind(piece, 0, self.cursor - 1)
        while at >= 0 and len(found) < limit:
            found.append(at + len(piece))
            at = self.text.rfind(piece, 0, at + len(piece) - 1)
        at = self.text.find(piece, self.cursor + 1, len(self.text) - 1)
        while at >= 0 and len(found) < limit:
            found.append(at + len(piece))
            at = self.text.find(piece, at + 1, len(self.text) - 1)
        return np.array(found, np.int64)
