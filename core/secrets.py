"""Content-level secret masking: secret values in trainable files are replaced before training.

File-level exclusion (`files.py`) keeps `.env` files and keys out, but secrets also sit in
ordinary source: a token pasted into a test, a password in a connection URL. A character model
replays what it saw often, so such values are replaced by a fixed marker of the same shape (the
public prefix, e.g. `ghp_`, stays): the model learns that a value goes there, never the value.

Torch-free, because the daemon fingerprints the masked text too. It runs over every training
file, so each pattern starts at a literal or a word start and cannot backtrack catastrophically:
masking stays linear in the text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

QUOTED_MARKER = "<secret>"  # inside a string literal: reads as an obvious placeholder
BARE_MARKER = "SECRET"  # outside quotes: a plain word stays valid shell, YAML, INI and code

_MIN_VALUE_CHARS = 8
_PEM_MAX_CHARS = 16_384  # a private key block ends within this; bounds the search for its END

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
# The base64 lines of a block whose END line is missing (truncated), newlines real or escaped.
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=]{16,}(?:[ \t]*(?:\r?\n|\\r?\\n)[ \t]*[A-Za-z0-9+/=]{16,})*")
_EDGE = re.compile(r"(?:\s|\\[rn])*")  # newlines, real or escaped, kept before a masked body

# Known formats, and URLs with a password: `secret` is replaced, `keep` (a public prefix) stays.
# Each starts with a literal, so the regex engine skips to candidates, and checks the character
# before it with a lookbehind placed after the literal.
_TOKENS = tuple(
    re.compile(pattern)
    for pattern in (
        r"(?P<keep>://[^\s:/@'\"`()\[\]{}<>]*:)(?P<secret>[^\s@/'\"`()\[\]{}<>]+)@",
        r"(?P<keep>A[KS]IA)(?<![A-Za-z0-9_]A[KS]IA)(?P<secret>[A-Z0-9]{16})(?![A-Za-z0-9])",
        r"(?P<keep>gh[pousr]_)(?<![A-Za-z0-9_]gh[pousr]_)(?P<secret>[A-Za-z0-9]{30,255})\b",
        r"(?P<keep>github_pat_)(?<![A-Za-z0-9_]github_pat_)(?P<secret>\w{22,255})",
        r"(?P<keep>xox[abprs]-)(?<![A-Za-z0-9_]xox[abprs]-)(?P<secret>[A-Za-z0-9-]{10,255})",
        r"(?P<keep>[sr]k_live_)(?<![A-Za-z0-9_][sr]k_live_)(?P<secret>[A-Za-z0-9]{10,255})",
        r"(?P<keep>AIza)(?<![A-Za-z0-9_]AIza)(?P<secret>[\w-]{35})(?![\w-])",
        r"(?P<keep>)(?P<secret>eyJ(?<![\w-]eyJ)[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*)",
    )
)

# Lines worth matching `_ASSIGNMENT` on: a secret-sounding name needs one of these (lower case).
_NAME_HINT = re.compile(r"pass|secret|token|key|auth|cred")
# `name = value`, `"name": value`, `name: Type = value`, `name := value`, `name => value`.
_ASSIGNMENT = re.compile(
    r"(?<![\w.])(?<!\w-)(?P<name>[A-Za-z_][\w.-]{0,100})(?P<sep>[\"'`]?[ \t]*"
    r"(?::[ \t]*[A-Za-z_][\w.]*(?:\[[\w., |\[\]]*\])?(?:[ \t]*\|[ \t]*[A-Za-z_][\w.]*)*[ \t]*)?"
    r"(?::=|=>|=(?!=)|:(?![:=]))[ \t]*)"
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`[^`\n]*`|[^\s'\"`,;)\]}]+)"
)
_NAME_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_WORD = re.compile(
    r"pass(?:word|wd|phrase)|secret|credential|token$"
    r"|apikey|accesskey|privatekey|auth(?:$|entication$|orization$|token|key|pass|secret|cred)"
)
_PAIRS = frozenset({"apikey", "accesskey", "privatekey"})
# A name ending in one of these holds something about a secret, not the secret itself.
# fmt: off
_NOT_SECRET_SUFFIX = frozenset(
    {
        "url", "uri", "endpoint", "host", "path", "file", "dir", "name", "names", "type",
        "header", "prompt", "message", "msg", "label", "field", "env", "var", "id", "ids",
        "length", "len", "size", "count", "format", "pattern", "regex", "ttl", "timeout",
        "expiry", "expires", "version", "mode", "enabled", "required", "provider",
        "backend", "class", "method", "scope", "scopes",
    }
)
# fmt: on
_PLACEHOLDER_WORDS = re.compile(
    r"change[_-]?me|example|placeholder|dummy|redacted|replace[_-]?me|your[_-]|fixme|todo|xxxx"
    r"|<secret>|\*\*\*",
    re.IGNORECASE,
)
# fmt: off
_PLACEHOLDER_VALUES = frozenset(
    {
        "password", "passwd", "secret", "token", "none", "null", "nil", "true", "false",
        "undefined", "default", "test", "testing",
    }
)
# fmt: on
_TEMPLATE = re.compile(r"[<{%@]|\$[{(A-Za-z_]")  # `<token>`, `{pw}`, `%(pw)s`, `${PW}`, `$PW`
_REFERENCE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:[(\[].*)?\Z", re.DOTALL)
_WORDS = re.compile(r"(?:[a-z]+|[A-Z]+)(?:[_-](?:[a-z]+|[A-Z]+))*\Z")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\Z")
_AUTH_SCHEME = re.compile(r"(?P<scheme>(?:Bearer|Basic|Token|Bot)[ \t]+)(?P<cred>\S{8,})\Z")

# A quoted literal of secret-like characters: masked when random enough.
_LITERAL = re.compile(r"(?P<q>[\"'`])(?P<body>[A-Za-z0-9+/=_-]{24,})(?P=q)")
_HEX = re.compile(r"[0-9a-fA-F]{32,}\Z")
_MIN_ENTROPY = 4.0
_MIN_HEX_ENTROPY = 3.0
# Random keys switch between lower case, upper case and digits at about half their characters;
# identifiers (`FiberForceV2`, `1st_order_Integral`) and alphabets at under a fifth. A capital
# starting a lower-case word and the separators do not count.
_MIN_CLASS_CHANGES = 0.25
_CHAR_CLASS = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "a" * 26 + "A" * 26 + "0" * 10,
    "+/=_-",
)


def mask_secrets(text: str) -> tuple[str, int]:
    """`text` with secret values replaced by markers, and how many were replaced."""
    masked = 0
    for step in (_mask_private_keys, _mask_assignments, _mask_tokens, _mask_literals):
        text, n = step(text)
        masked += n
    return text, masked


class _Quotes:
    """Which marker fits a position: the quoted one inside a string literal opened earlier on
    its line. Positions must be asked in increasing order; the scan resumes, so it is linear."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.open = ""  # the quote character of the literal open at `pos`, if any

    def marker(self, pos: int) -> str:
        text = self.text
        if line_start := text.rfind("\n", self.pos, pos) + 1:
            self.pos, self.open = line_start, ""
        i, open_quote = self.pos, self.open
        while i < pos:
            c = text[i]
            if c == "\\" and open_quote:
                i += 1
            elif c in "\"'`" and (not open_quote or c == open_quote):
                open_quote = "" if open_quote else c
            i += 1
        self.pos, self.open = i, open_quote
        return QUOTED_MARKER if open_quote else BARE_MARKER


def _sub(
    pattern: re.Pattern[str], text: str, fn: Callable[[re.Match[str]], str | None]
) -> tuple[str, int]:
    """`pattern.sub` where `fn` returns None for "leave as is"; also the number replaced."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        out = fn(match)
        if out is None:
            return match.group()
        count += 1
        return out

    return pattern.sub(replace, text), count


def _mask_private_keys(text: str) -> tuple[str, int]:
    """Keep the BEGIN and END lines (the model may learn that a key goes there), not the body."""
    if "PRIVATE KEY" not in text:
        return text, 0
    quotes = _Quotes(text)
    out: list[str] = []
    done = 0
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < done:
            continue  # inside a block already masked
        start = _EDGE.match(text, begin.end()).end()
        end = text.find(f"-----END {begin.group(1)}-----", start, start + _PEM_MAX_CHARS)
        if end < 0:
            body = _PEM_BODY.match(text, start)
            if body is None:
                continue
            end = body.end()
        while end > start and (text[end - 1].isspace() or text[end - 2 : end] in ("\\n", "\\r")):
            end -= 1 if text[end - 1].isspace() else 2
        if end > start and text[start:end] not in (QUOTED_MARKER, BARE_MARKER):
            out.append(text[done:start] + quotes.marker(start))
            done = end
    return "".join(out) + text[done:], len(out)


def _mask_tokens(text: str) -> tuple[str, int]:
    """Known token formats keep their public prefix; URLs keep everything but the password."""
    masked = 0
    for pattern in _TOKENS:
        quotes = _Quotes(text)

        def replace(match: re.Match[str], quotes: _Quotes = quotes) -> str | None:
            if match.group("keep").startswith("://") and _is_placeholder(match["secret"], 1):
                return None  # `${PW}`, `%(pw)s`, `xxx`, `SECRET`
            after = match.string[match.end("secret") : match.end()]  # the URL's `@`
            return match.group("keep") + quotes.marker(match.start("secret")) + after

        text, n = _sub(pattern, text, replace)
        masked += n
    return text, masked


def _is_secret_name(name: str) -> bool:
    """Whether a variable, key or flag name says it holds a secret (`author`, `tokenizer` and
    `token_url` do not)."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    if not words or words[-1] in _NOT_SECRET_SUFFIX:
        return False
    pairs = {a + b for a, b in pairwise(words)}
    return bool(pairs & _PAIRS) or any(_SECRET_WORD.search(w) for w in words)


def _is_placeholder(value: str, min_chars: int = _MIN_VALUE_CHARS) -> bool:
    """Values that stand for a secret rather than being one: short, templates, markers."""
    return (
        len(value) < min_chars
        or _TEMPLATE.match(value) is not None
        or value == BARE_MARKER
        or len(set(value)) == 1
        or _PLACEHOLDER_WORDS.search(value) is not None
        or value.lower().strip("_-.") in _PLACEHOLDER_VALUES
    )


def _mask_assignments(text: str) -> tuple[str, int]:
    """Values assigned to secret-sounding names: quoted literals, and bare config values."""

    def replace(match: re.Match[str]) -> str | None:
        value = match.group("value")
        if not _is_secret_name(match.group("name")) or any(t.search(value) for t in _TOKENS):
            return None  # known formats are masked next, keeping their public prefix
        quoted = value[0] in "\"'`"
        inner = value[1:-1] if quoted else value
        scheme = ""
        if auth := _AUTH_SCHEME.match(inner):
            scheme, inner = auth.group("scheme"), auth.group("cred")
        if _is_placeholder(inner) or (not scheme and any(c.isspace() for c in inner)):
            return None  # a template, or a sentence such as a prompt
        if quoted and (_DOTTED.match(inner) or _WORDS.match(inner)):
            return None  # a module path, a setting's or a field's name (`next_token`)
        if not quoted and (
            inner.isdigit()
            or (_REFERENCE.match(inner) and not (inner.isidentifier() and _mixed(inner)))
        ):
            return None  # code: a name, attribute, call or subscript, not a literal
        head = match.group("name") + match.group("sep")
        if quoted:
            return f"{head}{value[0]}{scheme}{QUOTED_MARKER}{value[-1]}"
        return f"{head}{scheme}{BARE_MARKER}"

    # Only lines with a name hint can match; finding them first keeps this pass fast. The hint
    # search runs on a lower-cased copy, whose lines are the original's line for line.
    lowered = text.lower()
    lines: list[str] = []
    masked = 0
    line_no, counted_to, done_line = 0, 0, -1
    for hint in _NAME_HINT.finditer(lowered):
        line_no += lowered.count("\n", counted_to, hint.start())
        counted_to = hint.start()
        if line_no != done_line:
            lines = lines or text.split("\n")
            lines[line_no], n = _sub(_ASSIGNMENT, lines[line_no], replace)
            masked += n
            done_line = line_no
    return ("\n".join(lines) if masked else text), masked


def _mixed(value: str) -> bool:
    """Letters and digits together: random keys have both, words and identifiers rarely do."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(k / n * math.log2(k / n) for k in Counter(value).values())


def _mask_literals(text: str) -> tuple[str, int]:
    """Quoted literals random enough to be keys, whatever they are assigned to."""

    def replace(match: re.Match[str]) -> str | None:
        body = match.group("body")
        classes = body.translate(_CHAR_CLASS)
        changes = sum(a != b and a + b != "Aa" for a, b in pairwise(classes))
        if not _mixed(body) or changes < _MIN_CLASS_CHANGES * (len(classes) - 1):
            return None  # words, identifiers, alphabets
        limit = _MIN_HEX_ENTROPY if _HEX.match(body) else _MIN_ENTROPY
        if _entropy(body) <= limit:
            return None
        return match.group("q") + QUOTED_MARKER + match.group("q")

    return _sub(_LITERAL, text, replace)
