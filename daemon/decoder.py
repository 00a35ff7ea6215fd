"""From a prefix to candidates for the rest of the line.

Deterministic decoding has two sources. The retriever (retrieval.py) copies continuations from
the repository and the current file, with calibrated confidences; when its n-th best is
confident enough the model is not run at all. Otherwise a beam search over whole lines adds the
model's own candidates: every beam runs as one row of a single batched engine call per
character, a beam ends when the model predicts the newline, and its confidence is the model's
probability of exactly that rest of line (newline included), with the current file mixed into
every next character when the model is served with its file cache (file_cache.py). When even the
best copied line is unlikely, the model also offers a confident start: its most probable next
characters, cut where probability x (length - 1) (the keystrokes accepting it is expected to
save: accepting is one) is largest. A character model is reliably right about the end of a word
or the next few symbols where no whole line is, and that start leads when it is expected to save
more than the best line. With a temperature, `n` lines are sampled from the model in one batch
instead (no retrieval: sampling is asked for variety). With `run_model` off the model is never
consulted (no prefix read, no beam, no start, no sample): retrieval's candidates are the answer,
which is how bench/quality.py measures what the model adds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from completiond.completion.declined import DECLINED_BELOW, DeclinedSuggestions, without_declined
from completiond.completion.file_cache import FileCache, FileCacheConfig
from completiond.completion.ranking import (
    MODEL_BELOW,
    START_BELOW,
    best_saving,
    copies_suffice,
    keystrokes_saved,
    order_merged,
    start_gate,
)
from completiond.completion.retrieval import UNSHOWABLE, Retriever
from completiond.core.errors import Cancelled
from completiond.core.limits import DEFAULT_COMPLETION_CHARS
from completiond.core.tokenizer import UNK_ID, CharTokenizer

from .engine import Engine, State
from .state_cache import DocumentStates

ScoredLines = list[tuple[Sequence[int] | np.ndarray, float]]  # character ids, log-probability


@dataclass
class DecoderConfig:
    default_max_chars: int = DEFAULT_COMPLETION_CHARS  # when the request does not say
    beam_width: int = 4  # beams kept at temperature 0 (at least the number of candidates asked)
    start_chars: int = 12  # longest confident start of the model
    # The model runs too when the n-th best copied candidate is less confident than this
    # (0: only when nothing is found; above 1: always).
    model_below: float = MODEL_BELOW
    # The model's confident start (its likeliest next characters, cut where the keystrokes it
    # is expected to save are most) is offered when no candidate is at least this confident
    # (or as confident as the request's min_confidence, when higher), and leads when it is
    # expected to save more (0: never; above 1: always). Higher trades exact whole lines for
    # keystrokes saved (`bench/quality.py --start-below` measures the trade); low, because with
    # typed-through suggestions cut a wrong whole line costs little. Editors ask 0.6 or more:
    # for them the gate is their threshold.
    start_below: float = START_BELOW
    # A suggestion typed through at least this confident is kept whole (0: every one is, above
    # 1: none is). For the figures (keystrokes saved by how often a right suggestion is
    # accepted) see docs/completion.md.
    declined_below: float = DECLINED_BELOW
    declined_documents: int = 256  # documents whose typed-through suggestions are remembered
    # False: retrieval alone answers, whatever the gates above say and at any temperature (the
    # `retrieval alone` row of bench/quality.py: what the product is without its model).
    run_model: bool = True
    # The current file mixed into the model's next characters as its beams write (file_cache.py).
    file_cache: FileCacheConfig = field(default_factory=FileCacheConfig)


@dataclass(frozen=True)
class Candidate:
    text: str
    confidence: float


@dataclass(frozen=True)
class Query:
    """A validated completion request."""

    prefix: str
    suffix: str = ""
    n: int = 1
    max_chars: int = DEFAULT_COMPLETION_CHARS
    temperature: float = 0.0
    min_confidence: float = 0.0
    document: str = ""  # key of the document's cached state; "" reads the prefix's tail cold
    seed: int | None = None  # for reproducible sampling
    cancelled: threading.Event | None = None  # set when the client gave up: stop decoding
    light: bool = False  # no optional model work (the confident start): the daemon is busy
    history: bool = True  # remember suggestions typed through in `document` (declined.py)


def _unshown_ids(tokenizer: CharTokenizer) -> np.ndarray:
    """[V] bool: the ids the model may not emit, the unknown symbol (it has no text to show) and
    the characters no suggestion may contain (retrieval.UNSHOWABLE)."""
    unshown = np.array([False, *(bool(UNSHOWABLE.match(ch)) for ch in tokenizer.chars)])
    unshown[UNK_ID] = True
    return unshown


def _printable(logp: np.ndarray, unshown: np.ndarray) -> np.ndarray:
    """[B,V] log-probabilities without the `unshown` ids, in place: pass an array you own. The
    graph already normalised them; the share of those dropped is lost."""
    logp[:, unshown] = -np.inf
    return logp


def _check(query: Query) -> None:
    if query.cancelled is not None and query.cancelled.is_set():
        raise Cancelled("the request was cancelled or ran past its deadline")


def _take(state: State, rows: np.ndarray) -> State:
    return state[0][:, rows], state[1][:, rows]


class Decoder:
    def __init__(
        self,
        engine: Engine,
        tokenizer: CharTokenizer,
        states: DocumentStates,
        config: DecoderConfig | None = None,
        retriever: Retriever | None = None,
        declined: DeclinedSuggestions | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.states = states  # where the prefix is read: cached per document, else cold
        self.config = config or DecoderConfig()
        self.retriever = retriever
        self.newline = tokenizer.newline_id
        self.unshown = _unshown_ids(tokenizer)
        # Kept by the caller across models when given (the user's choices outlive a retrain).
        self.declined = (
            declined
            if declined is not None
            else DeclinedSuggestions(self.config.declined_documents, self.config.declined_below)
        )

    def complete(self, query: Query) -> list[Candidate]:
        remember = query.history and self.declined.declined_below > 0
        declined, ticket = (
            self.declined.begin(query.document, query.prefix) if remember else (frozenset(), 0)
        )
        candidates = self._complete(query, declined)
        if remember:
            first = (candidates[0].text, candidates[0].confidence) if candidates else None
            self.declined.answered(query.document, query.prefix, first, ticket)
        return candidates

    def _complete(self, query: Query, declined: frozenset[str]) -> list[Candidate]:
        sampling = query.temperature > 0 and self.config.run_model
        retrieved: list[tuple[str, float]] = []
        if self.retriever is not None and not sampling:
            found = self.retriever.candidates(query.prefix, query.suffix, query.min_confidence)
            if declined:  # compared as shown (cleaned), each text once: what the gates below count
                kept: dict[str, float] = {}
                for text, conf in _offered(found, _cleaner(query), declined):
                    kept[text] = max(kept.get(text, 0.0), conf)
                found = list(kept.items())
            retrieved = found
        _check(query)  # a request given up during the lookup gets no answer
        if not self.config.run_model:
            return postprocess([], query, retrieved, declined=declined)
        retrieving = self.retriever is not None
        copied = retrieving and copies_suffice(retrieved, query.n, self.config.model_below)
        start_below = (
            start_gate(self.config.start_below, query.min_confidence, query.light)
            if retrieving
            else 0.0
        )
        surest = max((conf for _, conf in retrieved), default=0.0)
        if copied and surest >= start_below:
            return postprocess([], query, retrieved, declined=declined)
        logits, state = self.states.read(query.prefix, query.document, query.cancelled)
        lines: list[tuple[str, float]] = []
        if not copied:
            search = self._sample if sampling else self._beam_search
            lines = [(self.tokenizer.decode(ids), lp) for ids, lp in search(logits, state, query)]
        if sampling:
            return postprocess(lines, query, retrieved, declined=declined)
        scored = [*retrieved[:1], *((text, float(np.exp(lp))) for text, lp in lines)]
        lead = None
        if max([surest, *(conf for _, conf in scored)]) < start_below:
            to_beat = best_saving(scored, query.min_confidence)
            lead = self._confident_start(logits, state, query, to_beat)
        return postprocess(lines, query, retrieved, lead, declined)

    def _confident_start(
        self, logits: np.ndarray, state: State, query: Query, to_beat: float
    ) -> tuple[str, float] | None:
        """The model's greedy next characters, cut where the keystrokes they are expected to save
        are most, with their probability; None unless that beats `to_beat` (what the best
        candidate is expected to save). Stops as soon as no longer start could beat the best."""
        limit = min(self.config.start_chars, query.max_chars)
        ids: list[int] = []
        step = np.empty((1, 1), np.int64)  # the engine's input, one character, reused
        logp_sum = 0.0
        best: tuple[int, float] | None = None
        for _ in range(limit):
            _check(query)
            logp = logits[0]  # [V], read only: the state cache may hold these logits
            token = int(np.argmax(logp))
            if self.unshown[token]:  # not to be shown: the likeliest printable character
                token = int(np.argmax(_printable(logits[:1].copy(), self.unshown)[0]))
            if token == self.newline:
                break
            logp_sum += float(logp[token])
            ids.append(token)
            p = math.exp(logp_sum)
            saved = keystrokes_saved(len(ids), p)
            if saved > to_beat and p >= query.min_confidence:
                best, to_beat = (len(ids), p), saved
            if keystrokes_saved(limit, p) <= to_beat or p < query.min_confidence:
                break  # probabilities only fall: no longer start saves more, or is shown
            step[0, 0] = token
            logits_3d, state = self.engine.run(step, state)
            logits = logits_3d[:, -1, :]
        if best is None:
            return None
        return self.tokenizer.decode(ids[: best[0]]), best[1]

    def _beam_search(self, logits: np.ndarray, state: State, query: Query) -> ScoredLines:
        width = max(self.config.beam_width, query.n)
        lines = np.zeros((1, 0), np.int64)  # [B,t] characters of each live beam
        scores = np.zeros(1)  # [B] log-probability of each live beam
        finished: ScoredLines = []  # best first, at most `width`
        cache = None
        if self.config.file_cache.enabled:
            cache = FileCache(query.prefix, query.suffix, self.tokenizer, self.config.file_cache)
            pointers = [cache.start()]
        for step in range(query.max_chars):
            _check(query)
            if cache is not None:
                mixed = zip(logits, pointers, strict=True)
                logits = np.stack([cache.mix(row, at) for row, at in mixed])
            logp = _printable(logits + scores[:, None], self.unshown)  # [B,V]
            if step:  # lines that end here (an empty line is no suggestion)
                floor = finished[-1][1] if len(finished) == width else -np.inf
                ends = logp[:, self.newline]  # [B]
                finished.extend((lines[b], float(ends[b])) for b in np.flatnonzero(ends > floor))
                finished.sort(key=lambda f: -f[1])
                del finished[width:]
            logp[:, self.newline] = -np.inf
            flat = logp.ravel()
            top = (
                np.argpartition(flat, -width)[-width:]
                if flat.size > width
                else np.arange(flat.size)
            )
            top = top[np.argsort(flat[top])[::-1]]
            top = top[np.isfinite(flat[top])]
            # Scores only fall as a line grows: stop once no live beam can beat the n-th result.
            if len(top) == 0 or (
                len(finished) >= query.n and flat[top[0]] < finished[query.n - 1][1]
            ):
                break
            rows, tokens = np.divmod(top, logp.shape[1])
            lines = np.concatenate((lines[rows], tokens[:, None]), axis=1)
            scores = flat[top]
            if cache is not None:
                pointers = [
                    cache.advance(pointers[r], line) for r, line in zip(rows, lines, strict=True)
                ]
            logits_3d, state = self.engine.run(tokens[:, None], _take(state, rows))
            logits = logits_3d[:, -1, :]
        else:
            # max_chars reached: the live beams are cut there (their score has no newline term).
            finished.extend((line, float(score)) for line, score in zip(lines, scores, strict=True))
        return finished

    def _sample(self, logits: np.ndarray, state: State, query: Query) -> ScoredLines:
        rng = np.random.default_rng(query.seed)
        n = query.n
        logits = np.repeat(logits, n, axis=0)  # [n,V]
        state = _take(state, np.zeros(n, dtype=np.int64))
        lines: list[list[int]] = [[] for _ in range(n)]
        scores = np.zeros(n)
        live = np.ones(n, dtype=bool)
        for _ in range(query.max_chars):
            _check(query)
            logp = _printable(logits.copy(), self.unshown)  # [n,V]
            # Gumbel-max: one draw per row from softmax(logp / temperature).
            tokens = np.argmax(logp / query.temperature + rng.gumbel(size=logp.shape), axis=1)
            scores[live] += logp[live, tokens[live]]
            live &= tokens != self.newline
            if not live.any():
                break
            for i in np.flatnonzero(live):
                lines[i].append(int(tokens[i]))
            logits_3d, state = self.engine.run(tokens[:, None], state)
            logits = logits_3d[:, -1, :]
        return [(line, float(s)) for line, s in zip(lines, scores, strict=True)]


def _overlap(text: str, following: str) -> int:
    """Length of the longest end of `text` that is a start of `following`."""
    for k in range(min(len(text), len(following)), 0, -1):
        if text.endswith(following[:k]):
            return k
    return 0


def _cleaner(query: Query) -> Callable[[str], str]:
    """What a candidate text becomes when shown: at most max_chars, no trailing blanks, without
    what already follows the cursor on its line (an auto-inserted `)`)."""
    following = query.suffix.split("\n", 1)[0].strip()

    def clean(text: str) -> str:
        text = text[: query.max_chars].rstrip()
        return text[: len(text) - _overlap(text, following)].rstrip()

    return clean


def _offered(
    items: Sequence[tuple[str, float]], clean: Callable[[str], str], declined: frozenset[str]
) -> list[tuple[str, float]]:
    """The items' texts as shown, a declined one cut to its first word or left out, no empty."""
    texts = without_declined(((clean(text), v) for text, v in items), declined)
    return [(text, v) for text, v in texts if text]


def postprocess(
    lines: list[tuple[str, float]],
    query: Query,
    retrieved: Sequence[tuple[str, float]] = (),
    lead: tuple[str, float] | None = None,
    declined: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """Candidates from decoded lines with their log-probabilities and retrieved lines with their
    confidences: trailing blanks dropped, at most max_chars, nothing that repeats what already
    follows the cursor on its line (an auto-inserted `)`), no empty candidates, equal texts
    merged (the model's probabilities add up; a retrieved line keeps the larger of its own
    confidence and the model's), best first (`lead`, the model's confident start, when given;
    then most confident first when the model ran, else in the retriever's order), at most n,
    none below min_confidence; a decoded text the user declined here is cut to its first word or
    left out (declined.py; `retrieved` comes cut already)."""
    clean = _cleaner(query)
    merged: dict[str, float] = {}
    for text, logprob in _offered(lines, clean, declined):
        merged[text] = min(1.0, merged.get(text, 0.0) + float(np.exp(logprob)))
    # Retrieved lines were cut by the typed-through rule before the decoder's gates: only once.
    for text, confidence in _offered(retrieved, clean, frozenset()):
        merged[text] = max(merged.get(text, 0.0), confidence)
    leads = _offered([lead], clean, declined) if lead is not None else []
    ranked = order_merged(merged, bool(lines), leads[0] if leads else None)
    # Filtered before the first n are taken: a less confident candidate may lead (a start).
    shown = [Candidate(text, conf) for text, conf in ranked if conf >= query.min_confidence]
    return shown[: query.n]
