"""Feedback from the LSP bridge: each suggestion shown gets exactly one outcome (accepted,
partially accepted or dismissed) for the daemon's feedback counts. Pure, unit-tested."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from lsprotocol import types

from .lsp_edits import AUTO_CLOSED, LINE_BREAK, Suggestion, balance

CLOSERS = ")]}\"'`"  # what editors add after the cursor when an opening bracket or quote is typed

Outcome = Literal["accepted", "partially_accepted", "dismissed"]
Event = Literal["shown", "accepted", "partially_accepted", "dismissed"]


def feedback_name(editor: str) -> str:
    """The name feedback is counted under for an editor ("Visual Studio Code" ->
    "visual-studio-code"): the daemon accepts 1-32 of A-Z a-z 0-9 . _ + - (names are printed
    in terminals), so anything else becomes a dash rather than a refused report."""
    return re.sub(r"[^a-z0-9._+]+", "-", editor.lower()).strip("-")[:32] or "lsp"


@dataclass(frozen=True)
class Shown:
    """One answer's suggestions, shown at column `len(before)` of line `row`. Editors say what
    they show but not what became of it, so the line is followed through the changes after it:
    accepting suggestion i inserts `inserts[i]` at the cursor and makes the line `targets[i]`."""

    row: int
    before: str  # the line up to the cursor
    after: str  # the line from the cursor, when shown
    inserts: tuple[str, ...]  # best first
    targets: tuple[str, ...]
    line: str  # the line as last seen
    typed: int = 0  # how much of a suggestion has been typed since, in code points
    partial: bool = False  # 2+ characters of one came in one change: a word-wise accept

    @classmethod
    def at(cls, row: int, line: str, column: int, suggestions: Sequence[Suggestion]) -> Shown:
        inserts = tuple(s.insert for s in suggestions)
        targets = tuple(s.line for s in suggestions)
        return cls(row, line[:column], line[column:], inserts, targets, line)

    def follow(self, line: str) -> Shown | Outcome:
        """After a change of the line to `line`: accepted once a suggestion is all there and no
        longer one goes on from it, still open while the line only goes on along one, else
        resolved (something else typed, or a deletion)."""
        if line == self.line:
            return self
        whole = self._whole(line)
        if whole and not any(i != j and j.startswith(i) for i in whole for j in self.inserts):
            return "accepted"
        typed = self._typed(line)
        if typed is None or typed < self.typed:
            return self._unfinished()
        word = min(typed - self.typed, len(line) - len(self.line)) >= 2
        return replace(self, line=line, typed=typed, partial=self.partial or word)

    def outcome(self) -> Outcome:
        """The outcome once it is gone (superseded, the cursor left, closed), from the line as
        last seen: a whole suggestion that a longer one went on from was accepted after all."""
        return "accepted" if self._whole(self.line) else self._unfinished()

    def same(self, other: Shown) -> bool:
        """Whether `other` shows what this one shows: asked again as the user types along it,
        or in the menu as well as in ghost text, it is one suggestion and counts once."""
        return other.row == self.row and other.targets[0] in self.targets

    def _unfinished(self) -> Outcome:
        return "partially_accepted" if self.partial else "dismissed"

    def _whole(self, line: str) -> list[str]:
        """The suggestions all there in `line`: as accepted, or typed in full with only what may
        follow (see `_fits`) after them."""
        return [
            insert
            for insert, target in zip(self.inserts, self.targets, strict=True)
            if line == target
            or (
                line.startswith(self.before + insert)
                and not self.after.startswith(insert)  # there already: the line tells nothing
                and self._fits(insert, line[len(self.before) + len(insert) :])
            )
        ]

    def _typed(self, line: str) -> int | None:
        """The longest start of a suggestion that `line` has at the cursor, followed only by what
        may follow it (see `_fits`); None when the line has left them all."""
        if not line.startswith(self.before):
            return None
        text = line[len(self.before) :]
        return max(
            (
                typed
                for insert in self.inserts
                for typed in range(_common_start(insert, text) + 1)
                if self._fits(text[:typed], text[typed:])
            ),
            default=None,
        )

    def _fits(self, typed: str, rest: str) -> bool:
        """Whether `rest` can follow `typed` when only a suggestion was typed: closers the editor
        added for brackets and quotes opened in `typed`, then what followed the cursor when it
        was shown, less closers and blanks typed over."""
        opened, stray = balance(typed)
        closers = len(rest) - len(rest.lstrip(CLOSERS))
        return any(
            balance(typed + rest[:added]) == (opened[: len(opened) - added], stray)
            and self.after.endswith(rest[added:])
            and not self.after[: len(self.after) - len(rest) + added].strip(AUTO_CLOSED)
            for added in range(min(closers, len(opened)) + 1)
        )


def _common_start(a: str, b: str) -> int:
    shorter = min(len(a), len(b))
    return next((i for i in range(shorter) if a[i] != b[i]), shorter)


class FeedbackTracker:
    """Per document, the suggestion shown last and not resolved yet, so that every suggestion
    shown gets exactly one outcome: each method returns the feedback events to report."""

    def __init__(self) -> None:
        self._open: dict[str, Shown] = {}  # by document URI, the latest shown last

    def shown(self, uri: str, shown: Shown) -> list[Event]:
        """An answer with items: nothing new when it shows the suggestion already open, else
        that one is superseded (its outcome) and this one is shown."""
        older = self._open.pop(uri, None)
        if older is not None and older.same(shown):
            self._open[uri] = older
            return []
        self._open[uri] = shown
        return [older.outcome(), "shown"] if older is not None else ["shown"]

    def edited(
        self,
        uri: str,
        lines: Sequence[str],
        changes: Sequence[types.TextDocumentContentChangeEvent],
    ) -> list[Event]:
        """A `didChange`: `lines` are the document's lines after `changes`. A change of another
        line, or one that breaks the line, means the cursor left it."""
        shown = self._open.get(uri)
        if shown is None:
            return []
        line = lines[shown.row].rstrip("\r\n") if shown.row < len(lines) else ""
        followed = shown.follow(line)
        left = any(
            isinstance(change, types.TextDocumentContentChangePartial)
            and (
                change.range.start.line != shown.row
                or change.range.end.line != shown.row
                or LINE_BREAK.search(change.text) is not None
            )
            for change in changes
        )
        if isinstance(followed, Shown) and not left:
            self._open[uri] = followed
            return []
        del self._open[uri]
        return [followed.outcome() if isinstance(followed, Shown) else followed]

    def accepted(self, uri: str | None) -> list[Event]:
        """The editor ran the accept command for `uri` (no document given: the latest shown);
        nothing open there means the change that accepted it was counted already."""
        uri = uri if uri is not None else self.latest()
        if uri is None or self._open.pop(uri, None) is None:
            return []
        return ["accepted"]

    def closed(self, uri: str) -> list[Event]:
        shown = self._open.pop(uri, None)
        return [shown.outcome()] if shown is not None else []

    def latest(self) -> str | None:
        """The document of the latest suggestion still open."""
        return next(reversed(self._open), None)

    def close_all(self) -> list[tuple[str, Event]]:
        """The editor closes: each open suggestion's outcome, with its document."""
        outcomes: list[tuple[str, Event]] = [
            (uri, shown.outcome()) for uri, shown in self._open.items()
        ]
        self._open.clear()
        return outcomes
