"""Per-document LSTM states, so a keystroke costs one model step instead of re-reading the file.

For each document (keyed by the request's document id, else its path) the cache keeps the text
it has read, the state after it, the next-character logits, and checkpoints (the state every
`checkpoint_every` characters). A request whose prefix extends the cached text reads only the new
characters; an edit earlier in the document resumes from the nearest checkpoint before the edit.
A cached state is used only where the text matches exactly, so answers are the same as reading
from the entry's start. Documents never seen are read from a bounded tail, in one engine call per
checkpoint span. A request far from what a document's state has read (a jump through a huge file)
reads a fresh tail the same way, so no request reads more than a few tails, and a long read stops
between spans once the request is cancelled. Memory is bounded: a document keeps its last
`warm_chars` or so, and all documents together (their keys included) stay within `max_bytes`,
least recently used dropped first. A cache belongs to one served model, so a model swap starts
with an empty one.
"""

from __future__ import annotations

import bisect
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from completiond.core.errors import Cancelled
from completiond.core.tokenizer import CharTokenizer

from .engine import Engine, State


@dataclass
class ContextConfig:
    cold_chars: int = 512  # tail of the prefix read for a document never seen (latency bound)
    # Characters a request may read to bring a document's state up to its prefix; a request
    # further away reads a fresh cold tail instead (cheaper, and it bounds the decode slot's time).
    catch_up_chars: int = 2_048
    # Tail of a document read by Warm, off the hot path; also what a document keeps once it has
    # read twice this (typed through from top to bottom, its state stays bounded).
    warm_chars: int = 16_384
    checkpoint_every: int = 64  # an edit re-reads at most this many characters
    # All documents together, keys included (~30 fully warmed 16k-char files at 1x256).
    max_bytes: int = 16 << 20


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by binary search over C-speed slice compares."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


# What each kept state costs besides its numbers: two array headers, the (h, c) pair, its
# offset and the list slots holding them.
_STATE_OVERHEAD = (
    2 * sys.getsizeof(np.empty(0)) + sys.getsizeof((0, 0)) + sys.getsizeof(1 << 40) + 2 * 8
)


@dataclass
class _Entry:
    start: int  # document offset where reading began, from the zero state
    text: str  # document[start : start + len(text)], all read
    positions: list[int]  # checkpoint offsets into text, ascending, positions[0] == 0
    states: list[State]  # state after text[:positions[i]]
    logits: np.ndarray  # [1,V] after all of text, owning its memory
    state: State  # after all of text
    lock: threading.Lock = field(default_factory=threading.Lock)
    counted: int = 0  # bytes the cache counts for it (with its key), under the cache's lock

    def nbytes(self) -> int:
        per_state = 2 * self.state[0].nbytes + _STATE_OVERHEAD
        return (
            sys.getsizeof(self.text)
            + per_state * (len(self.states) + 1)
            + sys.getsizeof(self.logits)
        )


def _is_set(cancelled: threading.Event | None) -> bool:
    return cancelled is not None and cancelled.is_set()


class DocumentStates:
    def __init__(self, engine: Engine, tokenizer: CharTokenizer, config: ContextConfig) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.config = config
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # guards the dict, the byte count and `counted`
        self.hits = 0  # requests answered from a cached state (read by tests)

    def read(
        self, prefix: str, document: str | None, cancelled: threading.Event | None = None
    ) -> tuple[np.ndarray, State]:
        """Logits [1,V] predicting the character after `prefix`, and the state there; Cancelled
        when `cancelled` is set during a long read (what was read stays cached)."""
        if not document or not prefix:
            return self._read_cold(prefix)
        with self._lock:
            entry = self._entries.get(document)
            if entry is not None:
                self._entries.move_to_end(document)
        if entry is not None:
            with entry.lock:
                try:
                    resumed = self._resume(entry, prefix, cancelled)
                finally:
                    self._account(document, entry)
            if resumed is not None:
                return resumed
        entry = self._new_entry(prefix, self.config.cold_chars, cancelled)
        self._store(document, entry)
        return entry.logits, entry.state

    def warm(self, text: str, document: str, cancelled: threading.Event | None = None) -> None:
        """Read up to `warm_chars` of a document now, so later completions in it are warm."""
        if text:
            self._store(document, self._new_entry(text, self.config.warm_chars, cancelled))

    def __len__(self) -> int:
        return len(self._entries)

    def _read_cold(self, prefix: str) -> tuple[np.ndarray, State]:
        text = _tail(prefix, self.config.cold_chars)
        logits, state = self.engine.run(
            self.tokenizer.encode(text)[None, :], self.engine.zero_state(1)
        )
        return logits[:, -1, :], state

    def _new_entry(self, prefix: str, chars: int, cancelled: threading.Event | None) -> _Entry:
        text = _tail(prefix, chars)
        zero = self.engine.zero_state(1)
        entry = _Entry(len(prefix) - len(text), "", [0], [zero], np.empty((1, 0)), zero)
        self._extend(entry, text, 0, zero, cancelled)
        return entry

    def _resume(
        self, entry: _Entry, prefix: str, cancelled: threading.Event | None
    ) -> tuple[np.ndarray, State] | None:
        """Bring the entry to `prefix` from the nearest usable state; None if nothing matches
        or that is more than `catch_up_chars` away (a fresh tail is read instead)."""
        if len(prefix) <= entry.start:
            return None
        rel = prefix[entry.start :]
        same = common_prefix_length(rel, entry.text)
        if same == len(rel) == len(entry.text):
            self.hits += 1
            return entry.logits, entry.state
        if same == 0:
            return None
        if same == len(entry.text):  # typing on: continue from the end
            kept, pos, state = len(entry.positions), same, entry.state
        else:  # an edit (or the cursor moved back): the last checkpoint before the change
            i = bisect.bisect_right(entry.positions, min(same, len(rel) - 1)) - 1
            kept, pos, state = i + 1, entry.positions[i], entry.states[i]
        if len(rel) - pos > self.config.catch_up_chars:
            return None
        self.hits += 1
        del entry.positions[kept:], entry.states[kept:]
        self._extend(entry, rel, pos, state, cancelled)
        self._trim(entry)
        return entry.logits, entry.state

    def _extend(
        self,
        entry: _Entry,
        rel: str,
        pos: int,
        state: State,
        cancelled: threading.Event | None,
    ) -> None:
        """Read rel[pos:] from `state`, with a checkpoint at each multiple of checkpoint_every.
        Between spans, a set `cancelled` keeps what was read and raises Cancelled."""
        every = self.config.checkpoint_every
        ids = self.tokenizer.encode(rel[pos:])
        logits = entry.logits if pos == len(rel) else None
        offset = 0
        while offset < len(ids):
            stop = min(len(ids), (pos + offset) // every * every + every - pos)
            out, state = self.engine.run(ids[None, offset:stop], state)  # [1,T,V]
            logits = out[:, -1, :]
            offset = stop
            if offset < len(ids) and _is_set(cancelled):
                entry.text, entry.logits, entry.state = rel[: pos + offset], logits.copy(), state
                raise Cancelled("the request was cancelled or ran past its deadline")
            if (pos + offset) % every == 0 and offset < len(ids):
                entry.positions.append(pos + offset)
                entry.states.append(state)
        assert logits is not None
        # A copy: the row alone, not the engine's whole [1,T,V] output it is a view of.
        entry.text, entry.logits, entry.state = rel, logits.copy(), state

    def _trim(self, entry: _Entry) -> None:
        """Once an entry has read twice `warm_chars`, forget all but about its last `warm_chars`
        (from a checkpoint on): a document typed through from top to bottom stays bounded."""
        keep = self.config.warm_chars
        if len(entry.text) <= 2 * keep:
            return
        i = bisect.bisect_right(entry.positions, len(entry.text) - keep) - 1
        cut = entry.positions[i]
        entry.start += cut
        entry.text = entry.text[cut:]
        entry.positions = [p - cut for p in entry.positions[i:]]
        entry.states = entry.states[i:]

    def _store(self, document: str, entry: _Entry) -> None:
        with self._lock:
            old = self._entries.pop(document, None)
            self._bytes -= old.counted if old else 0
            self._entries[document] = entry
            entry.counted = _size(document, entry)
            self._bytes += entry.counted
            self._evict(keep=document)

    def _account(self, document: str, entry: _Entry) -> None:
        """Count what an entry holds now, evicting others if needed."""
        with self._lock:
            if self._entries.get(document) is entry:  # not evicted or replaced meanwhile
                size = _size(document, entry)
                self._bytes += size - entry.counted
                entry.counted = size
                self._evict(keep=document)

    def _evict(self, keep: str) -> None:
        while self._bytes > self.config.max_bytes and len(self._entries) > 1:
            name, entry = next(iter(self._entries.items()))
            if name == keep:
                self._entries.move_to_end(name)
                continue
            del self._entries[name]
            self._bytes -= entry.counted


def _size(document: str, entry: _Entry) -> int:
    """Bytes an entry costs the cache: its key (a client chooses its length) and its contents."""
    return sys.getsizeof(document) + entry.nbytes()


def _tail(prefix: str, chars: int) -> str:
    """The last `chars` characters, starting at a line start when one is near."""
    if not prefix:
        return "\n"  # an empty file: as after a newline
    if len(prefix) <= chars:
        return prefix
    tail = prefix[-chars:]
    newline = tail.find("\n", 0, chars // 4)
    return tail[newline + 1 :] if newline >= 0 and newline + 1 < len(tail) else tail
