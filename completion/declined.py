"""Suggestions the user typed through, per document, so that they are not offered again whole.

A user who sees a suggestion and types on instead of accepting it says that it is not what the
line becomes (or not all of it: editors' "accept word" looks the same). Offering the same
continuation again at the next keystroke is noise; its first word is still likely right (the end
of the name being typed), so a declined suggestion is cut to that word, and dropped once the word
is declined too (or when it has no shorter first word). Only typing along a suggestion declines
it: typing something else makes it impossible anyway. People also type along right suggestions
(not looking, or faster typing than reading), so a confident one (DECLINED_BELOW) is not
declined. Requests without a document (one-off completions) keep no history.

A declined suggestion is remembered as the line it would have made (the line's text before the
cursor, then the suggestion) for the line the cursor is on, told by its offset in the prefix (so
clients must send the prefix from the same place each time, as they do: the document's start,
or a fixed tail). An answer on another line forgets them; so does a request at or before the
column where one was offered (deleting back, or moving left: the user is rewriting that part).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

_FIRST_WORD = re.compile(r"\W{0,3}\w+")  # a name, after at most three symbols or blanks
MAX_PER_LINE = 64  # declined suggestions kept for one line; the oldest are forgotten first
MAX_LINE_CHARS = 1_000  # longer lines (minified code) keep no history: memory stays small
# A suggestion at least this confident is kept whole when typed through: people type along right
# suggestions too, and a sure one more likely is one (bench figures in DecoderConfig).
DECLINED_BELOW = 0.35


def first_word(text: str) -> str | None:
    """`text` up to the end of its first word; None when that is all of it or there is none."""
    match = _FIRST_WORD.match(text)
    return text[: match.end()] if match and match.end() < len(text) else None


def without_declined(
    candidates: Iterable[tuple[str, float]], declined: frozenset[str]
) -> list[tuple[str, float]]:
    """Each candidate the user declined at this cursor replaced by its first word, or left out
    when that is declined too (or there is none); a cut keeps the whole's confidence, a lower
    bound of its own. Order and the other candidates are unchanged."""
    if not declined:
        return list(candidates)
    out = []
    for text, confidence in candidates:
        if text in declined:
            cut = first_word(text)
            if cut is None or cut in declined:
                continue
            text = cut
        out.append((text, confidence))
    return out


@dataclass
class _Line:
    start: int  # offset of the line's first character in the prefix
    requests: int = 0  # requests begun on this line: only the newest one's answer is recorded
    # The line before the cursor at the last answer recorded, and its first suggestion (None: no
    # suggestion that typing on would decline).
    answered_before: str | None = None
    answered: str = ""
    # Declined: the line each would have made -> the cursor's column where it was offered.
    declined: OrderedDict[str, int] = field(default_factory=OrderedDict)


class DeclinedSuggestions:
    """Per document (bounded, least recently used forgotten), the suggestions typed through on the
    cursor's line. Thread-safe: requests of several documents run at once."""

    def __init__(self, documents: int = 256, declined_below: float = DECLINED_BELOW) -> None:
        self.documents = documents
        self.declined_below = declined_below  # a suggestion this confident is never declined
        self._lines: OrderedDict[str, _Line] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, document: str, prefix: str) -> tuple[frozenset[str], int]:
        """A request at the end of `prefix`: settles the answer recorded last (declined when the
        user typed on from there without accepting it) and returns the texts declined at this
        cursor, with the ticket that `answered` takes."""
        if not document:
            return frozenset(), 0
        start = prefix.rfind("\n") + 1
        before = prefix[start:]
        with self._lock:
            line = self._lines.get(document)
            if line is None or line.start != start:
                return frozenset(), 0
            self._lines.move_to_end(document)
            line.requests += 1
            last = line.answered_before
            if last is not None and before != last:  # the line changed: that answer is settled
                typed_on = len(before) > len(last) and before.startswith(last)
                if typed_on and not before.startswith(last + line.answered):
                    line.declined[last + line.answered] = len(last)
                    while len(line.declined) > MAX_PER_LINE:
                        line.declined.popitem(last=False)
                line.answered_before = None
            for made in [made for made, column in line.declined.items() if column >= len(before)]:
                del line.declined[made]
            declined = frozenset(
                made[len(before) :]
                for made in line.declined
                if len(made) > len(before) and made.startswith(before)
            )
            return declined, line.requests

    def answered(
        self, document: str, prefix: str, first: tuple[str, float] | None, ticket: int
    ) -> None:
        """Record the first suggestion (text, confidence) answered at the end of `prefix`, unless
        a later request of the document began meanwhile (this answer is stale: nobody sees it)."""
        start = prefix.rfind("\n") + 1
        if not document or len(prefix) - start > MAX_LINE_CHARS:
            return
        with self._lock:
            line = self._lines.get(document)
            if line is None or line.start != start:
                line = self._lines[document] = _Line(start)
            elif line.requests != ticket:
                return
            self._lines.move_to_end(document)
            unsure = first is not None and first[1] < self.declined_below
            line.answered_before = prefix[start:] if unsure else None
            line.answered = first[0] if unsure else ""
            while len(self._lines) > self.documents:
                self._lines.popitem(last=False)
