"""Character tokenizer: the model's alphabet, saved as JSON in every bundle.

Torch-free: the daemon encodes prefixes with it on the hot path, so encoding is one numpy gather
over code points instead of a Python loop.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import numpy as np

UNK_ID = 0
# Always in the alphabet, whether or not the corpus has them: end-of-line must be predictable
# and printable ASCII is what users type even in a repository that never used a character.
BASE_CHARS = "\n\t" + "".join(chr(c) for c in range(32, 127))
_TABLE_SIZE = 0x3000  # code points below this are looked up in a dense table


class CharTokenizer:
    """Maps characters to ids; id 0 stands for every character outside the alphabet."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("tokenizer alphabet must be distinct single characters")
        self._index = {ch: i + 1 for i, ch in enumerate(self.chars)}
        self._table = np.zeros(_TABLE_SIZE, dtype=np.int64)
        for ch, i in self._index.items():
            if ord(ch) < _TABLE_SIZE:
                self._table[ord(ch)] = i
        self._decode = np.array(["\ufffd", *self.chars], dtype=object)
        self.newline_id = self._index["\n"]

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 3, max_vocab: int = 256) -> CharTokenizer:
        """Alphabet = base characters plus corpus characters seen at least `min_count` times."""
        return cls(BASE_CHARS).extended(texts, min_count, max_vocab)

    def extended(
        self, texts: Iterable[str], min_count: int = 3, max_vocab: int = 256
    ) -> CharTokenizer:
        """This alphabet, then the characters of `texts` it lacks that are seen at least
        `min_count` times (most frequent first, up to `max_vocab` ids): every existing id keeps
        its character, so a model of this alphabet still applies to the extended one."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        known = set(self.chars)
        extra = [ch for ch, n in counts.most_common() if n >= min_count and ch not in known]
        return CharTokenizer(self.chars + extra[: max(0, max_vocab - 1 - len(self.chars))])

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` as int64 [len(text)]; characters outside the alphabet become UNK_ID."""
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids = self._table[np.minimum(points, _TABLE_SIZE - 1)]
        rare = points >= _TABLE_SIZE - 1
        if rare.any():
            ids = ids.copy()
            for i in np.flatnonzero(rare):
                ids[i] = self._index.get(chr(points[i]), UNK_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._decode[list(ids)])

    def covers(self, text: str) -> float:
        """Fraction of `text` inside the alphabet (1.0 = nothing unknown)."""
        if not text:
            return 1.0
        return float(np.count_nonzero(self.encode(text))) / len(text)

    def to_json(self) -> str:
        return json.dumps({"type": "char", "unk_id": UNK_ID, "chars": self.chars})

    @classmethod
    def from_json(cls, data: str) -> CharTokenizer:
        obj = json.loads(data)
        if obj.get("type") != "char" or obj.get("unk_id") != UNK_ID:
            raise ValueError("not a character tokenizer of this version")
        return cls(obj["chars"])
