"""Content-level secret masking: secret values in trainable files are replaced before training.

File-level exclusion (`files.py`) keeps `.env` files and keys out, but secrets also sit in
ordinary source: a token pasted into a test, a password in a connection URL. A character model
replays what it saw often, so such values are replaced by a fixed marker of the same shape (the
public prefix, e.g. `ghp_`, stays): the model learns that a value goes there, never the value.

Torch-free, because the daemon fingerprints the masked text too. It runs over every training
file, so each pattern starts at a literal or a word start (or only runs on texts that hold a
given substring) and cannot backtrack catastrophically: masking stays linear in the text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

QUOTED_MARKER = "<secret>"  # inside a string literal: reads as an obvious placeholder
BARE_MARKER = "SECRET"  # outside quotes: a plain word stays valid shell, YAML, INI and code

_MIN_VALUE_CHARS = 8
_PEM_MAX_CHARS = 16_384  # a private key block ends within this; bounds the search for its END

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
# The base64 lines of a block whose END line is missing (truncated), newlines real or escaped.
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=]{16,}(?:[ \t]*(?:\r?\n|\\r?\\n)[ \t]*[A-Za-z0-9+/=]{16,})*")
_EDGE = re.compile(r"(?:\s|\\[rn])*")  # newlines, real or escaped, kept before a masked body


@dataclass(frozen=True)
class _Format:
    """A known token format, or a context that says a secret follows (a URL's password, a
    command's password flag): the `secret` group is replaced, the `keep` group stays."""

    pattern: re.Pattern[str]
    # A substring every match contains: without it in the text, the pass is skipped. By default
    # the literal the pattern starts with; given for the patterns that start with none, whose
    # pass would try every position of the text.
    hint: str
    # Whether the match may continue a word (`xghp_...`, `task-proj-...`): checked here rather
    # than by a lookbehind before the literal, which would cost the engine its skip to it.
    in_word: bool = False
    check: Callable[[re.Match[str]], bool] | None = None  # a match it rejects stays as is


_SPECIAL = re.compile(r"[\\.^$*+?{}\[\]|()]")  # where the literal a pattern starts with ends


def _format(
    keep: str,
    secret: str,
    hint: str = "",
    in_word: bool = False,
    check: Callable[[re.Match[str]], bool] | None = None,
) -> _Format:
    """`hint` defaults to the literal that `keep` starts with."""
    hint = hint or _SPECIAL.split(keep, maxsplit=1)[0]
    return _Format(re.compile(f"(?P<keep>{keep})(?P<secret>{secret})"), hint, in_word, check)


def _mixed_secret(match: re.Match[str]) -> bool:
    """For short or common prefixes: random keys have letters and digits, identifiers rarely."""
    return _mixed(match["secret"])


def _password(match: re.Match[str]) -> bool:
    """A command's or a URL's password: any value but a template, a marker or a metavariable
    (`--password PASSWORD`)."""
    value = match["secret"]
    return not (_is_placeholder(value, 1) or _METAVAR.match(value))


def _url_password(match: re.Match[str]) -> bool:
    """A URL's password, unless it is a known format (masked next, keeping its prefix)."""
    return _password(match) and not _has_token(match["secret"])


def _user_password(match: re.Match[str]) -> bool:
    """`-u user:password`, not `-u 1000:1000` nor `-u app:app` (a user and a group)."""
    value = match["secret"]
    return _password(match) and not value.isdigit() and value != match["user"]


def _flag_password(match: re.Match[str]) -> bool:
    """`--password=value`, `--password value`; not `the --password option` (prose)."""
    spaced = match["keep"].rstrip("\"'").endswith((" ", "\t"))
    return _password(match) and not (spaced and _WORDS.match(match["secret"].rstrip(".,:;!?")))


def _bearer(match: re.Match[str]) -> bool:
    """`Bearer` and a token, not `Bearer error=invalid_token` (a challenge) nor a sentence."""
    return _mixed(match["secret"]) and not _is_placeholder(match["secret"])


def _header_credential(match: re.Match[str]) -> bool:
    """An `Authorization:` header's value: anything but words, dotted names and placeholders."""
    value = match["secret"]
    return not (_is_placeholder(value) or _WORDS.match(value) or _DOTTED.match(value))


_METAVAR = re.compile(r"[A-Z][A-Z_-]*\Z")
# A shell word: a command-line value ends at a blank, a quote or the shell's separators.
_WORD = r"[^\s'\"`;|&()<>\[\]]+"
# The rest of a command line, bounded so that the search from each command name stays linear.
_ARGS = r"[^\n;|&]{0,200}?[ \t]"

# Known formats keep their public prefix (the formats of gitleaks' and detect-secrets' rules
# that have one). Each pattern starts with a literal, so the regex engine skips to candidates
# (the two that do not run only on texts holding their hint). What a failed match scanned is
# not scanned again from each of its characters: a run ends at a character of the literal that
# starts the next candidate, or is bounded, or (the JWT) a lookbehind lets one start per run.
# fmt: off
_FORMATS = (
    # URLs with a password: everything but the password stays.
    _format(r"://[^\s:/@'\"`()\[\]{}<>]*:", r"[^\s@/'\"`()\[\]{}<>]+(?=@)", in_word=True,
            check=_url_password),
    _format("AKIA", "[A-Z0-9]{16}(?![A-Za-z0-9])"),  # AWS access key ids
    _format("ASIA", "[A-Z0-9]{16}(?![A-Za-z0-9])"),
    _format("gh[pousr]_", r"[A-Za-z0-9]{30,255}\b"),  # GitHub
    _format("github_pat_", r"\w{22,255}"),
    _format("gl(?:pat|dt|ft|soat|rt|cbt|ptt|imt|oas|agent|ffct)-",  # GitLab
            r"[\w-]{20,255}(?:\.[\w-]+)*"),
    _format("xox[abeoprs]-", "[A-Za-z0-9-]{10,255}"),  # Slack
    _format("xapp-", "[A-Za-z0-9-]{10,255}"),
    _format(r"hooks\.slack\.com/(?:services|workflows|triggers)/", r"[\w/+-]{20,255}",
            in_word=True),
    _format(r"discord(?:app)?\.com/api/webhooks/", r"[\w/-]{20,255}", in_word=True),
    _format("sk_(?:live|test|prod)_", "[A-Za-z0-9]{10,255}"),  # Stripe
    _format("rk_(?:live|test|prod)_", "[A-Za-z0-9]{10,255}"),
    _format("whsec_", "[A-Za-z0-9]{10,255}"),
    _format("AIza", r"[\w-]{35}(?![\w-])"),  # Google
    _format(r"ya29\.", r"[\w-]{20,}"),
    _format("GOCSPX-", r"[\w-]{20,}"),
    _format("1//0", r"[\w-]{30,}"),
    # OpenAI (project, service account, admin), Anthropic; then the older unprefixed form.
    _format(r"sk-(?:proj|svcacct|admin|ant-(?:api|admin|sid)\d\d)-", r"[\w-]{20,}"),
    _format("sk-", r"[A-Za-z0-9]{32,}(?![\w-])", check=_mixed_secret),
    _format("npm_", r"[A-Za-z0-9]{36,}(?![\w-])"),
    _format("pypi-", r"Ag[\w-]{50,}"),
    _format("hf_", r"[A-Za-z0-9]{30,}(?![\w-])"),  # Hugging Face
    _format("api_org_", r"[A-Za-z0-9]{30,}(?![\w-])"),
    _format(r"SG\.", r"[\w-]{16,}\.[\w-]{16,}", hint="SG."),  # SendGrid
    _format("SK", r"[0-9a-fA-F]{32}(?![\w-])"),  # Twilio
    _format("HRKU-", r"[\w-]{20,}"),  # Heroku
    _format("AccountKey=", "[A-Za-z0-9+/=]{20,}", in_word=True),  # Azure
    _format("SharedAccessKey=", "[A-Za-z0-9+/=]{20,}", in_word=True),
    # An Azure client secret: three characters and a digit before `Q~`.
    _format("", r"(?<![\w~.-])[\w~.]{3}\dQ~[\w~.-]{31,34}(?![\w~.-])", hint="Q~"),
    _format(r"(?<![\d:])\d{8,10}:", r"AA[\w-]{32,}", hint=":AA", in_word=True),  # Telegram
    _format("do[opr]_v1_", "[a-f0-9]{64}", hint="_v1_"),  # DigitalOcean
    _format("shp(?:at|ca|pa|ss)_", "[a-fA-F0-9]{32}"),  # Shopify
    _format("dapi", r"[a-f0-9]{32}(?![\w-])"),  # Databricks
    _format(r"hv[sb]\.", r"[\w-]{24,}"),  # HashiCorp Vault
    _format("dckr_pat_", r"[\w-]{20,}"),  # Docker Hub
    _format("AGE-SECRET-KEY-1", "[0-9A-Z]{50,}"),
    _format("ATATT3", r"[\w=-]{100,}"),  # Atlassian
    _format("glsa_", "[A-Za-z0-9+/_=]{32,}", check=_mixed_secret),  # Grafana
    _format("glc_", "[A-Za-z0-9+/_=]{32,}", check=_mixed_secret),
    _format("sntry[su]_", "[A-Za-z0-9+/_=]{40,}"),  # Sentry
    _format("lin_api_", "[A-Za-z0-9]{32,}"),  # Linear
    _format("PMAK-", "[a-fA-F0-9-]{40,}"),  # Postman
    _format("pplx-", r"[\w-]{30,}", check=_mixed_secret),  # Perplexity
    _format("gsk_", r"[\w-]{30,}", check=_mixed_secret),  # Groq
    _format("r8_", r"[\w-]{30,}", check=_mixed_secret),  # Replicate
    _format("nvapi-", r"[\w-]{30,}", check=_mixed_secret),  # NVIDIA
    _format("rubygems_", "[a-f0-9]{48}"),
    _format("sq0(?:atp|csp)-", r"[\w-]{22,}"),  # Square
    _format(r"pscale_(?:tkn|pw|oauth)_", r"[\w.=-]{32,}"),  # PlanetScale
    _format(r"dp\.pt\.", "[A-Za-z0-9]{40,}", hint="dp.pt."),  # Doppler
    _format("tskey-", r"[\w-]{20,}"),  # Tailscale
    # A JWT: all of it is the secret. A lookbehind, because its run may hold `eyJ` again and
    # each of those must not rescan it.
    _format("", r"eyJ(?<![\w-]eyJ)[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*", hint="eyJ", in_word=True),
    # Commands and headers that say a password or a token follows.
    # (The header's `A` is left out of the pattern so that it starts with a literal.)
    _format(r"uthorization[\"']?:[ \t]*(?:(?:Basic|Bearer|Token|token|Bot|Digest)[ \t]+)?",
            r"[\w.~+/=-]{8,}", in_word=True, check=_header_credential),
    _format(r"Bearer[ \t]+", r"[\w.~+/=-]{8,}", check=_bearer),
    _format(r"bearer[ \t]+", r"[\w.~+/=-]{8,}", check=_bearer),
    # curl's user and password; a bounded user, since a failed match rescans it.
    _format(r"-u(?:[ \t]+|=)[\"']?(?P<user>[^\s:'\"]{1,100}):", _WORD, check=_user_password),
    _format(r"--user(?:[ \t]+|=)[\"']?(?P<user>[^\s:'\"]{1,100}):", _WORD, check=_user_password),
    # `mysql -pPASSWORD`: glued (a `-p` alone prompts for it).
    _format(rf"mysql(?:dump|admin|import|check|sh|slap)?(?![\w-]){_ARGS}-p[\"']?", _WORD,
            check=_password),
    _format(rf"mariadb(?:-dump|-admin)?(?![\w-]){_ARGS}-p[\"']?", _WORD, check=_password),
    _format(rf"docker[ \t]+login{_ARGS}(?:-p|--password)[ \t]+[\"']?", _WORD, check=_password),
    _format(rf"podman[ \t]+login{_ARGS}(?:-p|--password)[ \t]+[\"']?", _WORD, check=_password),
    _format(r"sshpass[ \t]+-p[ \t]*[\"']?", _WORD, check=_password),
    _format(rf"redis-cli{_ARGS}-a[ \t]+[\"']?", _WORD, check=_password),
    _format(r"--pass(?:word|wd)(?:=|[ \t]+)[\"']?", _WORD, check=_flag_password),
    _format(r"machine[ \t]+\S+[ \t]+login[ \t]+\S+[ \t]+password[ \t]+", _WORD,
            check=_password),  # a .netrc line
)
# fmt: on

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
        "undefined", "default", "test", "testing", "pass",
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
    """Known token formats keep their public prefix; URLs and commands keep everything but the
    password."""
    masked = 0
    for fmt in _FORMATS:
        if fmt.hint not in text:
            continue
        quotes = _Quotes(text)

        def replace(
            match: re.Match[str], fmt: _Format = fmt, quotes: _Quotes = quotes
        ) -> str | None:
            if not _accepts(fmt, match):
                return None
            return match.group("keep") + quotes.marker(match.start("secret"))

        text, n = _sub(fmt.pattern, text, replace)
        masked += n
    return text, masked


def _accepts(fmt: _Format, match: re.Match[str]) -> bool:
    """Whether a match of `fmt` is a secret: it starts a word (unless the format may continue
    one) and passes the format's check."""
    start = match.start()
    before = match.string[start - 1] if start else " "
    if not fmt.in_word and (before.isalnum() or before in "_-"):
        return False
    return fmt.check is None or fmt.check(match)


def _has_token(value: str) -> bool:
    """Whether a known format occurs in `value` (the token pass masks it, keeping its prefix)."""
    return any(
        fmt.hint in value and any(_accepts(fmt, m) for m in fmt.pattern.finditer(value))
        for fmt in _FORMATS
    )


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
        or value.endswith((BARE_MARKER, QUOTED_MARKER))  # masked already (`sk-proj-SECRET`)
        or len(set(value)) == 1
        or _PLACEHOLDER_WORDS.search(value) is not None
        or value.lower().strip("_-.") in _PLACEHOLDER_VALUES
    )


def _mask_assignments(text: str) -> tuple[str, int]:
    """Values assigned to secret-sounding names: quoted literals, and bare config values."""

    def replace(match: re.Match[str]) -> str | None:
        value = match.group("value")
        if not _is_secret_name(match.group("name")) or _has_token(value):
            return None  # known formats are masked next, keeping their public prefix
        if _is_password_flag(match):
            return None  # masked next, as a shell word (which `,` does not end)
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


def _is_password_flag(match: re.Match[str]) -> bool:
    """`--password=...` on a command line."""
    name = match.group("name")
    return name in ("password", "passwd") and match.string.endswith("--", 0, match.start())


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
