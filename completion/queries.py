"""Held-out lines asked as completion queries, and what counts as right.

Shared by the per-repository confidence fit (calibration) and by evaluation, so both ask the
same kind of question and judge the answers alike. Two cursor modes:

- `typed`: after the indentation plus the first `typed_chars` characters of the line;
- `random`: a uniformly random point of the line's non-indent part, at least one character
  before its end.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from completiond.core.errors import InvalidRequest

MODES = ("typed", "random")
TYPED_CHARS = 10  # the `typed` cursor's default characters after the indentation


class CursorSettings(Protocol):
    """Where queries put the cursor: `Cursors` here, `EvalConfig` in evaluation."""

    @property
    def typed_chars(self) -> int: ...

    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class Cursors:
    typed_chars: int = TYPED_CHARS
    seed: int = 0  # draws the `random` cursors


def exact_match(prediction: str, truth: str) -> bool:
    """Equal up to whitespace between tokens (`a(b, c)` == `a(b,  c)`, not `a(b,c)`)."""
    return prediction.split() == truth.split()


def starts_truth(prediction: str, truth: str) -> bool:
    """A non-empty start of the truth, blanks between tokens aside: what a user keeps on
    accepting it (a shared start's confidence promises this, a whole line's exact match)."""
    typed_ahead = " ".join(prediction.split())
    return bool(typed_ahead) and " ".join(truth.split()).startswith(typed_ahead)


@dataclass(frozen=True)
class Line:
    """One eligible held-out line: text[start:end] is the line without its newline."""

    file: str
    number: int  # 1-based
    start: int  # offset of the line in the file's text
    indent: int  # characters of indentation
    length: int  # characters after the indentation, trailing blanks dropped


@dataclass(frozen=True)
class EvalQuery:
    line: Line
    mode: str
    column: int  # cursor, in characters after the indentation
    prefix: str
    suffix: str
    truth: str  # the rest of the line, trailing blanks dropped


def eligible_lines(texts: dict[str, str], typed_chars: int) -> list[Line]:
    """Lines with at least typed_chars + 1 characters after the indentation (blank ones never)."""
    lines: list[Line] = []
    for rel in sorted(texts):
        offset = 0
        for number, raw in enumerate(texts[rel].splitlines(keepends=True), start=1):
            body = raw.rstrip("\n").rstrip()
            indent = len(body) - len(body.lstrip())
            length = len(body) - indent
            if length >= max(1, typed_chars + 1):
                lines.append(Line(rel, number, offset, indent, length))
            offset += len(raw)
    return lines


def sample_lines(lines: list[Line], count: int, seed: int) -> list[Line]:
    """`count` lines drawn uniformly without replacement, in a random (seeded) order."""
    rng = random.Random(seed)
    return rng.sample(lines, min(count, len(lines)))


def make_query(text: str, line: Line, mode: str, column: int) -> EvalQuery:
    cursor = line.start + line.indent + column
    line_end = text.index("\n", line.start)
    body = text[line.start : line_end].rstrip()
    return EvalQuery(
        line, mode, column, text[:cursor], text[line_end:], body[cursor - line.start :]
    )


def sampled_queries(texts: dict[str, str], count: int, seed: int) -> list[EvalQuery]:
    """`count` sampled lines of `texts`, asked in every cursor mode (the typed cursor at
    TYPED_CHARS): what a fit to a repository's own lines asks."""
    cursors = Cursors(seed=seed)
    sampled = sample_lines(eligible_lines(texts, cursors.typed_chars), count, seed)
    return [q for mode in MODES for q in build_queries(texts, sampled, mode, cursors)]


def build_queries(
    texts: dict[str, str], lines: Sequence[Line], mode: str, config: CursorSettings
) -> list[EvalQuery]:
    """One query per line in `mode`; random cursors are drawn from the seed and the mode."""
    rng = random.Random(f"{config.seed}:{mode}")
    queries = []
    for line in lines:
        if mode == "typed":
            column = config.typed_chars
        elif mode == "random":
            column = rng.randrange(line.length)  # 0 .. length-1: at least one character left
        else:
            raise InvalidRequest(f"unknown cursor mode {mode!r} (expected one of {MODES})")
        queries.append(make_query(texts[line.file], line, mode, column))
    return queries
