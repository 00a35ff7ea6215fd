"""Baselines the product's completions are measured against (bench/quality.py).

- `NgramCompleter`: a token-level n-gram model with interpolated Kneser-Ney smoothing, trained on
  the training files and mixed with a unigram+bigram cache of the current file, decoding the rest
  of the line token by token (greedy, or a small beam) until the newline token. Its `complete`
  has the decoder's shape, so `completiond.evaluation.evaluate.evaluate` runs it unchanged.
- `train_toy_lstm`: the "classic toy" character LSTM (1 layer of 128 units, 60-character
  windows, greedy decoding), trained through the product's own pipeline into its own store.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import ModelStore
from completiond.daemon.decoder import Candidate, DecoderConfig, Query, postprocess
from completiond.daemon.model_slot import ModelSlot, ServedModel

# Identifiers and keywords, numbers, a newline, a run of blanks, multi-character operators, then
# any other single character. A newline is always a token of its own and no token spans one.
TOKEN = re.compile(
    r"[^\W\d]\w*"
    r"|\d\w*(?:\.\d\w*)?"
    r"|\n"
    r"|[ \t]+"
    r"|\*\*=?|//=?|>>=?|<<=?|->|=>|:=|==|!=|<=|>=|&&|\|\||\+\+|--|::|\.\.\.|[-+*/%&|^@]="
    r"|."
)
# Tokens a cursor can stand inside: the first token of a completion then has to extend them.
_PARTIAL = re.compile(r"[^\W\d]\w*|\d\w*(?:\.\d\w*)?|[-+*/%&|^@<>=!:.]+")
NEWLINE = "\n"
START = "<s>"  # padding before a file's first token


def tokenize(text: str) -> list[str]:
    return [sys.intern(t) for t in TOKEN.findall(text)]


@dataclass
class NgramConfig:
    order: int = 4  # tokens of context + 1
    # Share of the current file's cache in the mixture, at full evidence (see next_tokens).
    cache_weight: float = 0.25
    cache_bigram: float = 0.8  # of that share, the cache's bigram part (the rest: unigram)
    beam_width: int = 2  # 1 = greedy; wider beams end lines earlier (shorter, surer)
    top_k: int = 40  # candidates taken from each context's followers per step
    max_partial_candidates: int = 3000  # tokens extending a typed partial token, scored exactly


class _FileCache:
    """Unigram and bigram counts of a file's tokens up to the cursor."""

    def __init__(
        self,
        unigrams: Counter[str],
        bigrams: dict[str, Counter[str]],
        last: str | None,
    ) -> None:
        self.unigrams = unigrams
        self.total = sum(unigrams.values())
        self.bigrams = bigrams
        self.last = last  # the last token counted
        self.top = [w for w, _ in unigrams.most_common(64)]

    @classmethod
    def of(cls, tokens: list[str]) -> _FileCache:
        bigrams: dict[str, Counter[str]] = {}
        for a, b in itertools.pairwise(tokens):
            follow = bigrams.get(a)
            if follow is None:
                follow = bigrams[a] = Counter()
            follow[b] += 1
        return cls(Counter(tokens), bigrams, tokens[-1] if tokens else None)

    def add(self, tokens: list[str]) -> _FileCache:
        """A new cache with `tokens` appended; this one is left as it is."""
        if not tokens:
            return self
        bigrams = dict(self.bigrams)
        before = [self.last] if self.last is not None else []
        for a, b in zip([*before, *tokens], tokens[len(before) == 0 :], strict=False):
            bigrams[a] = bigrams.get(a, Counter()) + Counter({b: 1})
        return _FileCache(self.unigrams + Counter(tokens), bigrams, tokens[-1])


class NgramCompleter:
    """Interpolated Kneser-Ney n-gram model over code tokens, with a cache of the current file.

    Tables: `follow[m][context]` maps each word seen after an m-token context to its count: raw
    counts at the highest order, continuation counts (distinct left extensions) below it, and at
    m = 0 the context () for the unigram continuation counts."""

    def __init__(self, config: NgramConfig | None = None) -> None:
        self.config = config or NgramConfig()
        n = self.config.order
        if n < 2:
            raise ValueError("order must be at least 2")
        self.follow: list[dict[tuple[str, ...], dict[str, int]]] = [{} for _ in range(n)]
        self.totals: list[dict[tuple[str, ...], int]] = [{} for _ in range(n)]
        self.discount = [0.5] * n
        self.vocab: list[str] = []  # sorted, for prefix look-ups
        self._top_unigrams: list[str] = []
        self._top_cache: OrderedDict[tuple[int, tuple[str, ...]], list[str]] = OrderedDict()
        self._file_caches: OrderedDict[str, tuple[_FileCache, str | None]] = OrderedDict()

    # --- training ---------------------------------------------------------------------------

    @classmethod
    def fit(cls, texts: Iterable[str], config: NgramConfig | None = None) -> NgramCompleter:
        model = cls(config)
        n = model.config.order
        top = model.follow[n - 1]
        for text in texts:
            tokens = [START] * (n - 1) + tokenize(text)
            for i in range(n - 1, len(tokens)):
                context = tuple(tokens[i - n + 1 : i])
                follow = top.get(context)
                if follow is None:
                    follow = top[context] = {}
                follow[tokens[i]] = follow.get(tokens[i], 0) + 1
        # Lower orders: how many distinct tokens precede each (m+1)-gram.
        for m in range(n - 2, -1, -1):
            lower = model.follow[m]
            for context, follow in model.follow[m + 1].items():
                shorter = context[1:]
                target = lower.get(shorter)
                if target is None:
                    target = lower[shorter] = {}
                for word in follow:
                    target[word] = target.get(word, 0) + 1
        for m in range(n):
            counts = Counter()
            for context, follow in model.follow[m].items():
                model.totals[m][context] = sum(follow.values())
                counts.update(c for c in follow.values() if c <= 2)
            n1, n2 = counts[1], counts[2]
            model.discount[m] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        unigrams = model.follow[0].get((), {})
        unigrams.pop(START, None)
        model.vocab = sorted(unigrams)
        model._top_unigrams = heapq.nlargest(4 * model.config.top_k, unigrams, unigrams.get)
        model.totals[0][()] = sum(unigrams.values())
        return model

    # --- probabilities ----------------------------------------------------------------------

    def prob_kn(self, words: Iterable[str], context: tuple[str, ...]) -> dict[str, float]:
        """P(word | last order-1 tokens of context) for each word, interpolated Kneser-Ney."""
        words = list(dict.fromkeys(words))
        unigrams = self.follow[0].get((), {})
        total = max(1, self.totals[0].get((), 1))
        d = self.discount[0]
        uniform = 1.0 / (len(self.vocab) + 1)
        probs = {
            w: (max(unigrams.get(w, 0) - d, 0.0) + d * len(unigrams) * uniform) / total
            for w in words
        }
        for m in range(1, self.config.order):
            if len(context) < m:
                break
            ctx = context[len(context) - m :]
            follow = self.follow[m].get(ctx)
            if follow is None:
                break  # a longer context was not seen either
            total, d = self.totals[m][ctx], self.discount[m]
            back = d * len(follow) / total
            for w in words:
                probs[w] = max(follow.get(w, 0) - d, 0.0) / total + back * probs[w]
        return probs

    def _followers(self, m: int, ctx: tuple[str, ...]) -> list[str]:
        key = (m, ctx)
        top = self._top_cache.get(key)
        if top is None:
            follow = self.follow[m].get(ctx, {})
            top = heapq.nlargest(self.config.top_k, follow, follow.get)
            self._top_cache[key] = top
            if len(self._top_cache) > 200_000:
                self._top_cache.popitem(last=False)
        return top

    def _candidates(self, context: tuple[str, ...], cache: _FileCache, partial: str) -> list[str]:
        if partial:
            lo = bisect.bisect_left(self.vocab, partial)
            hi = bisect.bisect_left(self.vocab, partial + "\U0010ffff")
            words = self.vocab[lo:hi]
            if len(words) > self.config.max_partial_candidates:
                unigrams = self.follow[0][()]
                words = heapq.nlargest(self.config.max_partial_candidates, words, unigrams.get)
            words += [w for w in cache.unigrams if w.startswith(partial)]
            return words
        words = list(self._top_unigrams[: self.config.top_k])
        for m in range(1, self.config.order):
            if len(context) >= m:
                words += self._followers(m, context[len(context) - m :])
        previous = context[-1] if context else START
        follow = cache.bigrams.get(previous)
        if follow:
            words += [w for w, _ in follow.most_common(self.config.top_k)]
        words += cache.top[: self.config.top_k]
        return words

    def next_tokens(
        self,
        context: tuple[str, ...],
        cache: _FileCache,
        partial: str = "",
        allow_end: bool = True,
        width: int = 1,
    ) -> list[tuple[str, float]]:
        """The `width` most likely next tokens and their probabilities (renormalised over the
        tokens that extend `partial` when there is one), best first."""
        words = self._candidates(context, cache, partial)
        if not allow_end:
            words = [w for w in words if w != NEWLINE]
        if not words:
            return []
        probs = self.prob_kn(words, context)
        # The cache's share grows with its evidence: nothing is taken from the n-gram model for
        # a file (or a previous token) the cache has not seen yet.
        follow = cache.bigrams.get(context[-1] if context else START)
        follow_total = sum(follow.values()) if follow else 0
        mu = self.config.cache_weight
        mu_bigram = mu * self.config.cache_bigram * follow_total / (follow_total + 2)
        mu_unigram = mu * (1 - self.config.cache_bigram) * cache.total / (cache.total + 50)
        if mu_bigram or mu_unigram:
            keep = 1 - mu_bigram - mu_unigram
            for w, p in probs.items():
                mixed = keep * p + mu_unigram * cache.unigrams.get(w, 0) / cache.total
                if follow_total:
                    mixed += mu_bigram * follow.get(w, 0) / follow_total
                probs[w] = mixed
        if partial:
            norm = sum(probs.values())
            if norm > 0:
                probs = {w: p / norm for w, p in probs.items()}
        return heapq.nlargest(width, probs.items(), key=lambda item: item[1])

    # --- completion -------------------------------------------------------------------------

    def _head_cache(self, head: str) -> tuple[_FileCache, list[str]]:
        """The cache of the lines before the cursor's line, and their last tokens; kept between
        calls, so replaying a line keystroke by keystroke re-reads only that line."""
        cached = self._file_caches.get(head)
        if cached is None:
            tokens = tokenize(head)
            cached = (_FileCache.of(tokens), tokens[-(self.config.order - 1) :])
            self._file_caches[head] = cached
            if len(self._file_caches) > 8:
                self._file_caches.popitem(last=False)
        else:
            self._file_caches.move_to_end(head)
        return cached

    def complete(self, query: Query) -> list[Candidate]:
        cut = query.prefix.rfind("\n") + 1
        cache, recent = self._head_cache(query.prefix[:cut])
        line = tokenize(query.prefix[cut:])
        partial = ""
        if line and _PARTIAL.fullmatch(line[-1]):
            partial = line.pop()  # the cursor may stand inside it: the completion extends it
        cache = cache.add(line)
        context = tuple([START] * (self.config.order - 1) + recent + line)
        lines = self._decode(context, cache, partial, query)
        if not lines and partial:  # nothing known extends it: take it as a whole token
            lines = self._decode((*context, partial), cache.add([partial]), "", query)
        return postprocess(lines, query)

    def _decode(
        self, context: tuple[str, ...], cache: _FileCache, partial: str, query: Query
    ) -> list[tuple[str, float]]:
        """Rest-of-line texts and log-probabilities (newline included), best first."""
        n = self.config.order
        width = max(1, self.config.beam_width, query.n)
        beams: list[tuple[float, tuple[str, ...], str]] = [(0.0, context[-(n - 1) :], "")]
        finished: list[tuple[str, float]] = []
        first = True
        while beams:
            grown: list[tuple[float, tuple[str, ...], str]] = []
            for logp, ctx, text in beams:
                options = self.next_tokens(
                    ctx, cache, partial if first else "", bool(text.strip()), width
                )
                for word, p in options:
                    if p <= 0:
                        continue
                    score = logp + math.log(p)
                    if word == NEWLINE:
                        finished.append((text, score))
                        continue
                    new_text = text + (word[len(partial) :] if first else word)
                    if len(new_text) >= query.max_chars:
                        finished.append((new_text[: query.max_chars], score))
                        continue
                    grown.append((score, (*ctx[1:], word), new_text))
            first = False
            beams = heapq.nlargest(width, grown, key=lambda b: b[0])
            finished.sort(key=lambda f: -f[1])
            del finished[width:]
            # Scores only fall as a line grows: stop once no live beam can beat the n-th line.
            if len(finished) >= query.n and (not beams or beams[0][0] < finished[query.n - 1][1]):
                break
        return finished


# --- the classic toy character LSTM ---------------------------------------------------------


def train_toy_lstm(repo: Path, store_dir: Path, minutes: float, threads: int = 0) -> ServedModel:
    """1 layer of 128 units over 60-character windows, trained like the product (same budget,
    same pipeline, its own store), served with greedy decoding (beam width 1), the model alone
    (no retrieval)."""
    from completiond.training.model import ModelConfig
    from completiond.training.run import train_repository
    from completiond.training.train import TrainConfig

    store = ModelStore(store_dir)
    train_repository(
        repo,
        store,
        ModelConfig(hidden_size=128),
        TrainConfig(minutes=minutes, seq_len=60, threads=threads),
    )
    return ModelSlot(
        store,
        decoder_config=DecoderConfig(beam_width=1),
        retrieval_config=RetrievalConfig(enabled=False),
    ).load_current()
