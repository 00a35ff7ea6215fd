"""Edit planning for the LSP bridge: what accepting a candidate changes on the cursor's line, and
the LSP items that carry it (inline completions, completion-list items). Pure functions,
golden-tested (tests/golden/postprocess/)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lsprotocol import types
from pygls.workspace import TextDocument

PAIRS = {")": "(", "]": "[", "}": "{"}
QUOTES = "\"'`"
AUTO_CLOSED = ")]}\"'` \t"  # what editors auto-insert after the cursor (and blanks)
LINE_BREAK = re.compile(r"[\r\n]")  # LSP's line breaks: \n, \r\n and \r


@dataclass(frozen=True)
class Suggestion:
    """Accepting a candidate replaces `text[start:end]` with `insert` (offsets in code points,
    all on the cursor's line); `word_start` is where the identifier being typed starts, for
    completion items whose edit must cover what the editor filters on."""

    start: int
    end: int
    word_start: int
    insert: str
    line: str  # the cursor's line once accepted, without its line break


Planned = tuple[Suggestion, float]  # a suggestion and the daemon's confidence in it


def balance(line: str) -> tuple[str, str]:
    """Brackets and quote left open on a line (innermost last) and closers that match nothing:
    equal for two versions of a line when they nest the same way."""
    open_: list[str] = []
    stray: list[str] = []
    escaped = False
    for ch in line:
        if open_ and open_[-1] in QUOTES:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == open_[-1]:
                open_.pop()
        elif ch in QUOTES or ch in "([{":
            open_.append(ch)
        elif ch in PAIRS:
            if open_ and open_[-1] == PAIRS[ch]:
                open_.pop()
            else:
                stray.append(ch)
    return "".join(open_), "".join(stray)


def plan_edit(text: str, cursor: int, candidate: str) -> Suggestion | None:
    """The edit that accepting the daemon's `candidate` at offset `cursor` of `text` makes, or
    None when it would change nothing or split a word.

    The daemon strips a candidate's end that repeats the text after the cursor, but a candidate
    can also close an auto-inserted bracket or quote in its middle (`foo(x║)` + `, y) + 1`). The
    edit absorbs the shortest run of auto-inserted closers after the cursor that keeps the line
    nested as it was, then the rest of the line too when that is blank or what the candidate
    ends with. Text before the cursor is never touched, so indentation stays as it is."""
    candidate = LINE_BREAK.split(candidate, maxsplit=1)[0].rstrip()
    line_start = max(text.rfind("\n", 0, cursor), text.rfind("\r", 0, cursor)) + 1
    breaks = LINE_BREAK.search(text, cursor)
    line_end = breaks.start() if breaks else len(text)
    before, after = text[line_start:cursor], text[cursor:line_end]
    if not candidate or re.match(r"\w", after):
        return None
    nesting = balance(before + after)
    closers = len(after) - len(after.lstrip(AUTO_CLOSED))
    take = next(
        (m for m in range(closers + 1) if balance(before + candidate + after[m:]) == nesting), 0
    )
    rest = after[take:].strip()
    if (not rest or candidate.endswith(rest)) and balance(before + candidate) == nesting:
        take = len(after)
    line = before + candidate + after[take:]
    if line == before + after:
        return None
    word_len = len(before) - len(re.sub(r"\w+$", "", before))
    return Suggestion(cursor, cursor + take, cursor - word_len, candidate, line)


def plan_edits(text: str, cursor: int, candidates: Sequence[tuple[str, float]]) -> list[Planned]:
    """The candidates (text, confidence), best first, that make an edit, with their edits."""
    planned = [(plan_edit(text, cursor, candidate), conf) for candidate, conf in candidates]
    return [(s, conf) for s, conf in planned if s is not None]


def inline_items(
    document: TextDocument,
    position: types.Position,
    found: Sequence[Planned],
    command: types.Command,
) -> list[types.InlineCompletionItem]:
    """Ghost text: each suggestion inserted at the cursor, replacing what its edit absorbs."""
    return [
        types.InlineCompletionItem(
            insert_text=s.insert,
            range=lsp_range(document, position, s.start, s.start, s.end),
            command=command,
        )
        for s, _ in found
    ]


def completion_items(
    document: TextDocument,
    position: types.Position,
    found: Sequence[Planned],
    command: types.Command,
) -> list[types.CompletionItem]:
    """Completion-list items, best first: each edit starts where the word being typed starts,
    which editors filter the list on, and is labelled with the line it makes."""
    items = []
    for rank, (s, confidence) in enumerate(found):
        new_text = document.source[s.word_start : s.start] + s.insert
        items.append(
            types.CompletionItem(
                label=s.line.strip(),
                kind=types.CompletionItemKind.Text,
                detail=f"completiond {confidence:.0%}",
                sort_text=f"{rank:04d}",
                filter_text=new_text,
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(
                    range=lsp_range(document, position, s.start, s.word_start, s.end),
                    new_text=new_text,
                ),
                command=command,
            )
        )
    return items


def lsp_range(
    document: TextDocument, position: types.Position, cursor: int, start: int, end: int
) -> types.Range:
    """Offsets on the cursor's line as an LSP range in the client's units (UTF-16 by default)."""
    units = document.position_codec.client_num_units
    text = document.source
    return types.Range(
        start=types.Position(position.line, position.character - units(text[start:cursor])),
        end=types.Position(position.line, position.character + units(text[cursor:end])),
    )
