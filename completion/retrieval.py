"""Candidates copied from the repository and the current file, with calibrated confidences.

A small character model knows the language's local patterns but not the repository's names;
the repository itself knows them. For the text before the cursor, the retriever looks for the
places where it occurs again, from the most specific context to the least: the previous line and
the current one, the current line from its start (indentation included), then the current line
from each of its later tokens. What followed there, up to the end of that line, becomes a
candidate, from the repository's index (kept up to date by the daemon) and from the current file
itself (the text above the cursor's line and below it, weighted higher: a file repeats itself
most), and lines of the current file with the cursor line's shape, names renamed. Shorter
candidates too: starts several continuations share, and the end of the name being typed.

Each candidate's confidence is a logistic function of how it was found (the context's
specificity, the share of occurrences that continue this way, its length, whether the file
itself has it), so that a confidence of 0.7 means about 70% of such suggestions are exactly
right and a threshold on it is meaningful. Every training run fits the weights to the
repository (calibration.py); DEFAULT_WEIGHTS, fitted on held-out files of Python
standard-library packages by `bench/calibrate.py`, serve until then and anchor that fit.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from completiond.core.index import Searchable

from .ranking import Scored, order_retrieved

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\w+|[^\w\s]|\s+")  # where a shared start of continuations may end
_NAME = re.compile(r"[A-Za-z_]\w*")
_SHAPE_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|\S")
_TYPING_NAME = re.compile(r"(?<!\w)[A-Za-z_]\w*$")  # a name the cursor stands at the end of
_WORD = re.compile(r"\w*")
SHAPE_RANK = 3  # Found.rank of a line of the same shape in the current file
# Characters no suggestion may contain, wherever it comes from (a repository file, the model):
# it reaches a terminal (`completiond complete`, the shells) or an editor. C0 and C1 controls
# but tab and the line break (ESC starts terminal escapes, CR overwrites the line), DEL, the
# Unicode line and paragraph separators, and the bidirectional embeddings, overrides and
# isolates that make code read otherwise than it runs ("Trojan Source").
UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Logistic weights for the features of `features` (bench/calibrate.py prints a refit).
DEFAULT_WEIGHTS = (-0.406, 2.149, 1.543, 0.557, 0.046, 0.189, -0.636, 0.245, 0.667, 0.653, 0.909)


@dataclass
class RetrievalConfig:
    enabled: bool = True
    max_candidates: int = 16  # whole continuations collected, most specific contexts first
    min_anchor_chars: int = 2  # shortest context (after the line's start) worth looking up
    # Occurrences read per context, in the index (an even sample beyond) and in the current file.
    # Fewer in the index is faster but makes confidences less sharp (`bench/retrieval_rules.py
    # --set occurrences_read=50` compares).
    occurrences_read: int = 100
    document_occurrences: int = 200
    document_chars: int = 200_000  # of the current file searched, each side of the cursor
    document_weight: float = 3.0  # one occurrence in the current file counts this many times
    shape_lines: int = 50  # lines of the current file above and below compared by shape (0: off)
    shared_from: int = 2  # the most frequent continuations per context whose shared starts count
    # A shared start or a name's end may lead only when no whole line is at least this confident
    # (calibrated: right about this often), or the request's min_confidence when higher
    # (ranking.order_retrieved). Higher trades exact whole lines for keystrokes saved.
    shared_below: float = 0.02
    weights: tuple[float, ...] = DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Found:
    """A continuation and how it was found: the inputs of its confidence."""

    text: str
    rank: int  # of the context that found it: 0 previous + current line, 1 current line, 2 token,
    # 3 (SHAPE_RANK) a line of the current file of the same shape, names renamed
    context_chars: int  # length of that context, blanks stripped
    repo_count: int  # occurrences of context + text in the index
    document_count: int  # ... and in the current file
    total: int  # occurrences of the context followed by a non-blank rest of line, both places
    partial: bool = False  # a start shared by several continuations, not a whole rest of line
    word: bool = False  # (partial too) the end of the name being typed, as continuations go on


def contexts(prefix: str, max_chars: int = 240) -> list[tuple[int, str]]:
    """The pieces of text before the cursor to look up, most specific first, with their rank:
    0 the previous line and the current one, 1 the current line from its start, 2 and more the
    current line from each of its tokens. None is longer than `max_chars` (a minified line of
    thousands of tokens costs no more than a normal one)."""
    line_start = prefix.rfind("\n") + 1
    line = prefix[line_start:]
    found = []
    if line_start:  # from the line break before the previous line
        before = prefix.rfind("\n", 0, line_start - 1)
        both = prefix[before:] if before >= 0 else "\n" + prefix
        if len(both) <= max_chars:
            found.append((0, both))
    if len(line) < max_chars:
        found.append((1, "\n" + line))
    first = len(line) - max_chars
    found.extend((2, line[m.start() :]) for m in _TOKEN.finditer(line) if m.start() >= first)
    return found


def _continuations_within(
    text: str, context: str, start: int, end: int, counts: dict[str, int], limit: int
) -> int:
    """Add to `counts` what follows each occurrence of `context` inside text[start:end], up to
    the end of its line ("": the line ends there); return how many occurrences were read (at
    most `limit`)."""
    read = 0
    at = text.find(context, start, end)
    while at >= 0 and read < limit:
        read += 1
        after = at + len(context)
        stop = text.find("\n", after, end)
        rest = text[after : stop if stop >= 0 else end].rstrip()
        counts[rest] = counts.get(rest, 0) + 1
        at = text.find(context, at + 1, end)
    return read


def _file_continuations(
    prefix: str, suffix: str, context: str, chars: int, limit: int
) -> dict[str, int]:
    """What follows `context` in the current file, above the cursor's line and below it (up to
    `chars` each side). Searched in place: a keystroke in a large file copies none of it."""
    counts: dict[str, int] = {}
    line_start = prefix.rfind("\n") + 1
    start = max(0, line_start - chars)
    if start == 0 and context[0] == "\n" and prefix.startswith(context[1:], 0, line_start):
        limit -= _continuations_within(prefix, context[1:], 0, line_start, counts, 1)  # line 1
    limit -= _continuations_within(prefix, context, start, line_start, counts, limit)
    below = suffix.find("\n")  # ends the cursor's line: a line-start context may match here
    if below >= 0:
        _continuations_within(suffix, context, below, below + 1 + chars, counts, limit)
    return counts


def _token_starts(text: str) -> Iterator[str]:
    """The starts of `text` that end at a token (not in blanks), shortest first, `text` itself
    excluded: where a suggestion shorter than a whole line may stop."""
    for m in _PIECE.finditer(text):
        if m.end() == len(text):
            return
        if not m.group().isspace():
            yield text[: m.end()]


@dataclass(frozen=True)
class _Tally:
    """What one context found, kept so that its shared starts are derived only when needed."""

    repo: dict[str, int]  # continuation -> occurrences in the index
    doc: dict[str, int]  # ... in the current file
    heads: list[str]  # its most frequent continuations
    rank: int
    chars: int
    total: int  # occurrences followed by a non-blank rest of line
    ended: int  # occurrences where the line ends (blanks at most)

    def shared_starts(self) -> list[Found]:
        """Starts of the most frequent continuations that several continuations share, counted
        over all of them. When a context goes on in many ways that agree on their first tokens
        (`__init__(self` then different arguments), those tokens are a surer suggestion than any
        whole line, and accepting them saves keystrokes where no whole line would be right."""
        keys = sorted({*self.repo, *self.doc})
        starts: list[Found] = []
        seen: set[str] = set()
        for head in self.heads:
            for piece in _token_starts(head):
                if piece in seen:
                    continue
                seen.add(piece)
                first = bisect_left(keys, piece)
                sharing = keys[first : bisect_left(keys, piece + "\U0010ffff", first)]
                if len(sharing) < 2:
                    break  # a longer start is shared by no more
                repo = sum(self.repo.get(k, 0) for k in sharing)
                doc = sum(self.doc.get(k, 0) for k in sharing)
                starts.append(Found(piece, self.rank, self.chars, repo, doc, self.total, True))
        return starts


def _starts(wholes: dict[str, Found], tallies: list[_Tally]) -> list[Found]:
    """The shared starts of every context, the most specific first, none equal to a whole."""
    starts: dict[str, Found] = {}
    for tally in tallies:
        for start in tally.shared_starts():
            if start.text not in wholes:
                starts.setdefault(start.text, start)
    return list(starts.values())


def _word_end(prefix: str, wholes: dict[str, Found], tallies: list[_Tally]) -> Found | None:
    """When the cursor stands at the end of a name: how the most specific context found anywhere
    completes it (`self._emb` -> `edded_header`), counted over all its occurrences (those where
    the name ends at the cursor, the line too or not, count against it). A name defined once in
    the file is completed although no two continuations share it, which no shared start would
    offer; None when that context says the name is complete."""
    tail = prefix[-240:]  # searched alone: the prefix may be a whole file, its line minified
    if not _TYPING_NAME.search(tail[tail.rfind("\n") + 1 :]):
        return None
    tally = next((t for t in tallies if t.total + t.ended), None)
    if tally is None:
        return None
    repo: dict[str, int] = {}
    doc: dict[str, int] = {}
    for counts, into in ((tally.repo, repo), (tally.doc, doc)):
        for rest, count in counts.items():
            word = _WORD.match(rest).group()  # type: ignore[union-attr]  # \w* always matches
            if word:
                into[word] = into.get(word, 0) + count
    if not repo and not doc:
        return None
    best = max({*repo, *doc}, key=lambda w: (repo.get(w, 0) + doc.get(w, 0), w))
    if best in wholes:
        return None  # the whole line is that word: its own confidence stands
    occurrences = tally.total + tally.ended
    return Found(
        best, tally.rank, tally.chars, repo.get(best, 0), doc.get(best, 0), occurrences, True, True
    )


def _partials(prefix: str, wholes: dict[str, Found], tallies: list[_Tally]) -> list[Found]:
    """Candidates shorter than a whole line: shared starts, and the end of the name typed (which
    replaces a shared start of the same text: it is counted as exactly that name)."""
    word = _word_end(prefix, wholes, tallies)
    if word is None:
        return _starts(wholes, tallies)
    return [*(s for s in _starts(wholes, tallies) if s.text != word.text), word]


def _with_mass(
    starts: list[tuple[str, float]], wholes: list[tuple[str, float]], heads: int = 3
) -> list[tuple[str, float]]:
    """Shared starts, each at least as confident as the whole lines that begin with it together
    (they exclude each other: the line starts so at least that often), plus the token-boundary
    starts of the `heads` most confident wholes that another whole shares. A start found in a
    less specific context than the wholes it begins would otherwise look less sure than they."""
    pieces = dict(starts)  # distinct texts (_partials)
    for head, _ in wholes[:heads]:
        for piece in _token_starts(head):
            pieces.setdefault(piece, 0.0)
    out = []
    for piece, own in pieces.items():
        sharing = [c for text, c in wholes if text.startswith(piece)]
        if own or len(sharing) > 1:
            out.append((piece, max(own, min(0.99, sum(sharing)))))
    return out


def _renamed(text: str, names: dict[str, str]) -> str:
    return _NAME.sub(lambda m: names.get(m.group(), m.group()), text)


def _shapes(prefix: str, suffix: str, lines: int) -> tuple[dict[str, int], int]:
    """Continuations from lines of the current file with the cursor line's shape: the same
    indentation and tokens with names renamed consistently (`'isError': require('./isError'),`
    gives `'isEmpty':` the rest ` require('./isEmpty'),`). Files repeat shapes more than text.
    Only where the cursor is not inside a name; returns (rest -> lines, lines matched)."""
    start = prefix.rfind("\n") + 1
    line = prefix[start:]
    body = line.lstrip()
    if not body or line[-1].isalnum() or line[-1] == "_" or lines <= 0:
        return {}, 0
    indent = line[: len(line) - len(body)]
    tokens = _SHAPE_TOKEN.findall(body)
    if len(tokens) < 2:
        return {}, 0
    window = 200 * lines  # characters each side: a huge file costs no more than a normal one
    above = prefix[max(0, start - window) : start].split("\n")[-lines - 1 : -1]
    if start > window:
        above = above[1:]  # cut in the middle
    below = suffix[:window].split("\n")[1 : lines + 1]
    found: dict[str, int] = {}
    matched = 0
    for other in (*above, *below):
        if not other.startswith(indent) or other[len(indent) : len(indent) + 1] != body[0]:
            continue
        theirs = _SHAPE_TOKEN.findall(other)
        if len(theirs) <= len(tokens):
            continue
        names: dict[str, str] = {}
        for a, b in zip(theirs, tokens, strict=False):
            if _NAME.fullmatch(a) and _NAME.fullmatch(b):
                if names.setdefault(a, b) != b:
                    break
            elif a != b:
                break
        else:
            if all(a == b for a, b in names.items()):
                continue  # the same text: the plain lookup finds it
            end = 0
            for token in theirs[: len(tokens)]:
                end = other.index(token, end) + len(token)
            rest = _renamed(other[end:], names).rstrip()
            if line.endswith(" ") and rest.startswith(" "):
                rest = rest[1:]
            matched += 1
            if rest:
                found[rest] = found.get(rest, 0) + 1
    return found, matched


def features(found: Found, document_weight: float) -> list[float]:
    """The logistic model's inputs; DEFAULT_WEIGHTS are in this order (`word` came last: a
    calibration file written before it gets its default weight, calibration.py)."""
    weighted = found.repo_count + document_weight * found.document_count
    share = weighted / max(1.0, found.total + (document_weight - 1) * found.document_count)
    return [
        1.0,
        math.log(max(share, 1e-3)),
        float(found.rank == 0),
        float(found.rank == 1),
        float(found.rank == SHAPE_RANK),
        min(found.context_chars, 30) / 10,
        math.log1p(len(found.text)),
        math.log1p(found.total),
        float(found.document_count > 0),
        float(found.partial),
        float(found.word),
    ]


def showable(scored: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Each text cut before its first UNSHOWABLE character (a start of a line is at least as
    likely as the line), empty ones left out, each text once where it first came, with the
    highest confidence it had."""
    out: dict[str, float] = {}
    for text, confidence in scored:
        match = UNSHOWABLE.search(text)
        cut = text[: match.start()] if match else text
        if cut:
            out[cut] = max(out.get(cut, 0.0), confidence)
    return list(out.items())


class Retriever:
    """Looks up the text before the cursor; one per served model (in the daemon, its index is
    the daemon's, kept up to date with every saved file)."""

    def __init__(self, index: Searchable | None, config: RetrievalConfig | None = None) -> None:
        self.index = index  # None: the current file only
        self.config = config or RetrievalConfig()

    def find(self, prefix: str, suffix: str) -> list[Found]:
        """Distinct continuations of the text before the cursor, most specific context first,
        then the shorter candidates: starts that several of them share, the end of the name
        typed (each text once)."""
        wholes, tallies = self._lookup(prefix, suffix)
        return [*wholes.values(), *_partials(prefix, wholes, tallies)]

    def _lookup(self, prefix: str, suffix: str) -> tuple[dict[str, Found], list[_Tally]]:
        """Whole continuations by text, and what each context looked up found."""
        config = self.config
        found: dict[str, Found] = {}
        tallies: list[_Tally] = []
        for rank, context in contexts(prefix):
            if rank > 1 and len(context.strip()) < config.min_anchor_chars:
                break
            repo = (
                self.index.continuations(context, config.occurrences_read)
                if self.index is not None
                else {}
            )
            doc = _file_continuations(
                prefix, suffix, context, config.document_chars, config.document_occurrences
            )
            ended = repo.pop("", 0) + doc.pop("", 0)
            total = sum(repo.values()) + sum(doc.values())
            ordered = sorted({*repo, *doc}, key=lambda t: (-repo.get(t, 0) - doc.get(t, 0), t))
            chars = len(context.strip())
            heads = ordered[: config.shared_from]
            tallies.append(_Tally(repo, doc, heads, rank, chars, total, ended))
            for text in ordered:
                if len(found) >= config.max_candidates:
                    return found, tallies
                if text not in found:
                    counts = repo.get(text, 0), doc.get(text, 0)
                    found[text] = Found(text, rank, chars, *counts, total)
        shaped, matched = _shapes(prefix, suffix, config.shape_lines)
        chars = len(prefix[prefix.rfind("\n") + 1 :].strip())
        for text, count in sorted(shaped.items(), key=lambda item: -item[1]):
            if len(found) >= config.max_candidates:
                break
            found.setdefault(text, Found(text, SHAPE_RANK, chars, 0, count, matched))
        return found, tallies

    def confidence(self, found: Found) -> float:
        z = sum(
            w * x
            for w, x in zip(
                self.config.weights, features(found, self.config.document_weight), strict=True
            )
        )
        return 1.0 / (1.0 + math.exp(-z))

    def candidates(
        self, prefix: str, suffix: str, min_confidence: float = 0.0
    ) -> list[tuple[str, float]]:
        """(text, confidence), best first: whole rests of line, most confident first, unless
        a shorter candidate (a shared start, at least as confident as the wholes that begin with
        it; the end of the name typed) leads by `ranking.order_retrieved`'s rule."""
        if not self.config.enabled:
            return []
        found, tallies = self._lookup(prefix, suffix)
        wholes = sorted(((f.text, self.confidence(f)) for f in found.values()), key=lambda s: -s[1])

        def shorter() -> list[Scored]:  # only looked for when the rule asks
            partials = [(f.text, self.confidence(f)) for f in _partials(prefix, found, tallies)]
            return _with_mass(partials, wholes)

        return order_retrieved(wholes, shorter, min_confidence, self.config.shared_below)
