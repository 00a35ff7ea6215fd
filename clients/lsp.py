"""`completiond lsp`: a stdio language server that brings the daemon's completions to any editor.

The bridge keeps the editor's open documents (pygls applies incremental changes), warms the
daemon with them off the request path, and answers `textDocument/inlineCompletion` (ghost text)
and `textDocument/completion` (for editors without inline completion) from `Complete`. A newer
request for a document answers the older one empty at once and cancels its gRPC call; without a
daemon or a model every answer is empty and the editor is told once through `window/logMessage`.
Each suggestion shown is followed through the document's changes to one outcome (accepted,
partially accepted or dismissed), reported to the daemon's feedback counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import grpc
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from completiond.core.errors import CompletiondError, DaemonUnreachable
from completiond.core.limits import MAX_COMPLETION_CHARS
from completiond.core.locations import repo_root
from completiond.core.version import __version__
from completiond.v1 import completion_pb2 as pb

from .client import Client, Connection, add_connection_options, connection

CANDIDATES = 3  # asked per request: inline completion cycles through them, completion lists them
COMPLETE_TIMEOUT_S = 5.0  # a completion later than this is no longer wanted
WARM_TIMEOUT_S = 30.0  # reading a long document cold can take a while; nobody waits on it
WARM_DEBOUNCE_S = 0.5  # after the last change: one Warm per pause in typing, not per keystroke

_PAIRS = {")": "(", "]": "[", "}": "{"}
_QUOTES = "\"'`"
_AUTO_CLOSED = ")]}\"'` \t"  # what editors auto-insert after the cursor (and blanks)
_CLOSERS = ")]}\"'`"  # what editors add after the cursor when an opening bracket or quote is typed
_LINE_BREAK = re.compile(r"[\r\n]")  # LSP's line breaks: \n, \r\n and \r


# --- Post-processing: pure, golden-tested (tests/golden/postprocess/) ---------------------------


# Ghost text should be right when it shows: on held-out files of Python, C, JavaScript and
# TypeScript (bench/quality.py), 73-88% of the suggestions at confidence >= 0.6 were a prefix of
# the truth.
DEFAULT_MIN_CONFIDENCE = 0.6
ACCEPTED_COMMAND = "completiond.accepted"  # run by the editor when an item is accepted


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


def _balance(line: str) -> tuple[str, str]:
    """Brackets and quote left open on a line (innermost last) and closers that match nothing:
    equal for two versions of a line when they nest the same way."""
    open_: list[str] = []
    stray: list[str] = []
    escaped = False
    for ch in line:
        if open_ and open_[-1] in _QUOTES:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == open_[-1]:
                open_.pop()
        elif ch in _QUOTES or ch in "([{":
            open_.append(ch)
        elif ch in _PAIRS:
            if open_ and open_[-1] == _PAIRS[ch]:
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
    candidate = _LINE_BREAK.split(candidate, maxsplit=1)[0].rstrip()
    line_start = max(text.rfind("\n", 0, cursor), text.rfind("\r", 0, cursor)) + 1
    breaks = _LINE_BREAK.search(text, cursor)
    line_end = breaks.start() if breaks else len(text)
    before, after = text[line_start:cursor], text[cursor:line_end]
    if not candidate or re.match(r"\w", after):
        return None
    nesting = _balance(before + after)
    closers = len(after) - len(after.lstrip(_AUTO_CLOSED))
    take = next(
        (m for m in range(closers + 1) if _balance(before + candidate + after[m:]) == nesting), 0
    )
    rest = after[take:].strip()
    if (not rest or candidate.endswith(rest)) and _balance(before + candidate) == nesting:
        take = len(after)
    line = before + candidate + after[take:]
    if line == before + after:
        return None
    word_len = len(before) - len(re.sub(r"\w+$", "", before))
    return Suggestion(cursor, cursor + take, cursor - word_len, candidate, line)


# --- Feedback: what became of a shown suggestion; pure, unit-tested ------------------------------


Outcome = Literal["accepted", "partially_accepted", "dismissed"]
Event = Literal["shown", "accepted", "partially_accepted", "dismissed"]


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
        opened, stray = _balance(typed)
        closers = len(rest) - len(rest.lstrip(_CLOSERS))
        return any(
            _balance(typed + rest[:added]) == (opened[: len(opened) - added], stray)
            and self.after.endswith(rest[added:])
            and not self.after[: len(self.after) - len(rest) + added].strip(_AUTO_CLOSED)
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
                or _LINE_BREAK.search(change.text) is not None
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
        uri = uri if uri is not None else next(reversed(self._open), None)
        if uri is None or self._open.pop(uri, None) is None:
            return []
        return ["accepted"]

    def closed(self, uri: str) -> list[Event]:
        shown = self._open.pop(uri, None)
        return [shown.outcome()] if shown is not None else []

    def close_all(self) -> list[Event]:
        outcomes: list[Event] = [shown.outcome() for shown in self._open.values()]
        self._open.clear()
        return outcomes


# --- The bridge -----------------------------------------------------------------------------------


@dataclass
class BridgeConfig:
    daemon: Connection
    root: Path  # paths sent to the daemon are relative to it
    max_chars: int = 80
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass
class _Pending:
    """A completion waiting on the daemon, so that a newer one can answer it empty."""

    call: grpc.Future
    waiter: asyncio.Future[None]
    superseded: bool = False

    def abandon(self) -> None:
        self.superseded = True
        self.call.cancel()
        if not self.waiter.done():
            self.waiter.set_result(None)


@dataclass
class _DaemonLink:
    """The gRPC client, made on first use (the daemon may start after the editor)."""

    connection: Connection
    client: Client | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Client:
        with self.lock:
            if self.client is None:
                self.client = self.connection.client(timeout_s=WARM_TIMEOUT_S)
            return self.client

    def close(self) -> None:
        with self.lock:
            if self.client is not None:
                self.client.close()


class CompletionBridge(LanguageServer):
    """pygls server whose handlers call the daemon; every daemon failure is an empty answer."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__("completiond", __version__)
        self.config = config
        self.shutdown_requested = False
        self._daemon = _DaemonLink(config.daemon)
        self._down = False  # a failure was logged; the next one is not, until a success
        self.client_name = "lsp"  # the editor, from `initialize`, for feedback counts
        # Per (method, document): inline and list completions of one keystroke both go ahead.
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._warm_timers: dict[str, asyncio.TimerHandle] = {}
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completiond-warm")
        self._feedback = FeedbackTracker()
        self._reporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completiond-report")
        # Partials: pygls tags each handler with attributes, which bound methods cannot take.
        self.feature(types.TEXT_DOCUMENT_DID_OPEN)(partial(self.did_open))
        self.feature(types.TEXT_DOCUMENT_DID_CHANGE)(partial(self.did_change))
        self.feature(types.TEXT_DOCUMENT_DID_CLOSE)(partial(self.did_close))
        self.feature(types.SHUTDOWN)(partial(self.on_shutdown))
        self.feature(types.INITIALIZE)(partial(self.on_initialize))
        self.command(ACCEPTED_COMMAND)(partial(self.on_accepted))
        self.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
            partial(self.inline_completion)
        )
        self.feature(
            types.TEXT_DOCUMENT_COMPLETION,
            types.CompletionOptions(trigger_characters=[".", "(", "["]),
        )(partial(self.completion))

    def close(self) -> None:
        """Warming is no longer wanted; reports still queued go out, then the channel closes,
        before the process exits (it joins the executors' threads)."""
        self._warmer.shutdown(wait=False, cancel_futures=True)
        self._reporter.submit(self._daemon.close)
        self._reporter.shutdown(wait=False)

    def on_initialize(self, params: types.InitializeParams) -> None:
        name = params.client_info.name if params.client_info else ""
        self.client_name = "-".join(name.lower().split())[:32] or "lsp"

    # Feedback: a suggestion shown is followed through the changes after it (FeedbackTracker);
    # an accepted item also runs ACCEPTED_COMMAND with its document's URI, where the editor runs
    # item commands. Reported to the daemon off the request path, in order, on a thread of their
    # own (never behind a slow Warm); losing one is harmless.

    def on_accepted(self, *arguments: object) -> None:
        uri = arguments[0] if arguments and isinstance(arguments[0], str) else None
        self._report(self._feedback.accepted(uri))

    def _shown(
        self, document: TextDocument, position: types.Position, suggestions: list[Suggestion]
    ) -> None:
        row = position.line
        line_start = document.offset_at_position(types.Position(row, 0))
        lines = document.lines
        line = lines[row].rstrip("\r\n") if row < len(lines) else ""
        shown = Shown.at(row, line, suggestions[0].start - line_start, suggestions)
        self._report(self._feedback.shown(document.uri, shown))

    def _report(self, events: list[Event]) -> None:
        for event in events:
            self._reporter.submit(self._report_now, event)

    def _report_now(self, event: Event) -> None:
        with contextlib.suppress(DaemonUnreachable, grpc.RpcError):
            self._daemon.get().feedback(self.client_name, event)

    # Documents: pygls keeps their text; the daemon gets it to read ahead of the first request.

    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self._warm(params.text_document.uri)

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if (timer := self._warm_timers.pop(uri, None)) is not None:
            timer.cancel()
        self._warm_timers[uri] = asyncio.get_running_loop().call_later(
            WARM_DEBOUNCE_S, self._warm, uri
        )
        lines = self.workspace.get_text_document(uri).lines
        self._report(self._feedback.edited(uri, lines, params.content_changes))

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if (timer := self._warm_timers.pop(uri, None)) is not None:
            timer.cancel()
        for key in [key for key in self._pending if key[1] == uri]:
            self._pending.pop(key).abandon()
        self._report(self._feedback.closed(uri))

    def on_shutdown(self, params: None) -> None:
        self.shutdown_requested = True
        self._report(self._feedback.close_all())
        for timer in self._warm_timers.values():
            timer.cancel()
        for pending in self._pending.values():
            pending.abandon()

    def _warm(self, uri: str) -> None:
        self._warm_timers.pop(uri, None)
        if uri in self.workspace.text_documents:
            text = self.workspace.get_text_document(uri).source
            loop = asyncio.get_running_loop()
            self._warmer.submit(self._warm_now, loop, uri, text, self._path(uri))

    def _warm_now(self, loop: asyncio.AbstractEventLoop, uri: str, text: str, path: str) -> None:
        """On the warm thread: the outcome is reported on the event loop, like any other."""
        try:
            self._daemon.get().warm(text, document_id=uri, path=path)
        except (DaemonUnreachable, grpc.RpcError) as error:
            _call_soon(loop, self._failed, error)
        else:
            _call_soon(loop, self._succeeded)

    def _path(self, uri: str) -> str:
        """The document's path relative to the repository (absolute outside it; "" unsaved)."""
        fs_path = to_fs_path(uri)
        if fs_path is None:
            return ""
        path = Path(fs_path)
        root = self.config.root
        return str(path.relative_to(root)) if path.is_relative_to(root) else fs_path

    # Failures: empty answers, logged once until the daemon answers again.

    def _failed(self, error: Exception) -> None:
        if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.CANCELLED:
            return
        if not self._down:
            self._down = True
            detail = error.details() if isinstance(error, grpc.RpcError) else str(error)
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Warning,
                    message=f"completiond: no completions ({detail})",
                )
            )

    def _succeeded(self) -> None:
        self._down = False

    # Requests.

    async def _candidates(
        self, method: str, document: TextDocument, cursor: int
    ) -> list[pb.Candidate]:
        """The daemon's candidates at `cursor`; [] when superseded, failed or cancelled."""
        loop = asyncio.get_running_loop()
        uri = document.uri
        key = (method, uri)
        if (older := self._pending.pop(key, None)) is not None:
            older.abandon()
        try:
            client = self._daemon.get()
        except DaemonUnreachable as error:
            self._failed(error)
            return []
        text = document.source
        request = pb.CompleteRequest(
            prefix=text[:cursor],
            suffix=text[cursor:],
            path=self._path(uri),
            document_id=uri,
            n=CANDIDATES,
            max_chars=self.config.max_chars,
            min_confidence=self.config.min_confidence,
        )
        waiter: asyncio.Future[None] = loop.create_future()
        call = client.completion.Complete.future(
            request, timeout=COMPLETE_TIMEOUT_S, metadata=client.metadata
        )
        pending = self._pending[key] = _Pending(call, waiter)
        call.add_done_callback(lambda _: _call_soon(loop, _settle, waiter))
        try:
            await waiter
        except asyncio.CancelledError:  # $/cancelRequest, or shutdown
            call.cancel()
            raise
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]
        if pending.superseded:
            return []
        try:
            response = call.result()
        except grpc.RpcError as error:
            self._failed(error)
            return []
        self._succeeded()
        return list(response.candidates)

    async def _suggestions(
        self, method: str, uri: str, position: types.Position
    ) -> tuple[TextDocument, list[tuple[Suggestion, float]]]:
        document = self.workspace.get_text_document(uri)
        if uri not in self.workspace.text_documents:
            return document, []  # never opened: pygls would read the disk; nothing to complete
        cursor = document.offset_at_position(position)
        text = document.source
        candidates = await self._candidates(method, document, cursor)
        if document.source != text:  # changed meanwhile: the editor drops the answer anyway
            return document, []
        found = []
        for candidate in candidates:
            suggestion = plan_edit(text, cursor, candidate.text)
            if suggestion is not None:
                found.append((suggestion, candidate.confidence))
        return document, found

    async def inline_completion(
        self, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        document, found = await self._suggestions(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params.text_document.uri, params.position
        )
        if found:
            self._shown(document, params.position, [s for s, _ in found])
        accepted = _accepted(document.uri)
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(
                    insert_text=s.insert,
                    range=_range(document, params.position, s.start, s.start, s.end),
                    command=accepted,
                )
                for s, _ in found
            ]
        )

    async def completion(self, params: types.CompletionParams) -> types.CompletionList:
        document, found = await self._suggestions(
            types.TEXT_DOCUMENT_COMPLETION, params.text_document.uri, params.position
        )
        accepted = _accepted(document.uri)
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
                        range=_range(document, params.position, s.start, s.word_start, s.end),
                        new_text=new_text,
                    ),
                    command=accepted,
                )
            )
        if found:
            self._shown(document, params.position, [s for s, _ in found])
        # Incomplete: the editor asks again as the user types, so the line follows the typing.
        return types.CompletionList(is_incomplete=True, items=items)


def _accepted(uri: str) -> types.Command:
    return types.Command(
        title="completiond: suggestion accepted", command=ACCEPTED_COMMAND, arguments=[uri]
    )


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object
) -> None:
    """Run `callback` on the event loop from another thread (gRPC's, the warm thread)."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server is exiting
        loop.call_soon_threadsafe(callback, *args)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _range(
    document: TextDocument, position: types.Position, cursor: int, start: int, end: int
) -> types.Range:
    """Offsets on the cursor's line as an LSP range in the client's units (UTF-16 by default)."""
    units = document.position_codec.client_num_units
    text = document.source
    return types.Range(
        start=types.Position(position.line, position.character - units(text[start:cursor])),
        end=types.Position(position.line, position.character + units(text[cursor:end])),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="completiond lsp",
        description="Language server on stdio: the repository daemon's completions in any editor.",
    )
    add_connection_options(parser)
    parser.add_argument(
        "--max-chars",
        type=int,
        default=80,
        help=f"longest completion (default: 80, max {MAX_COMPLETION_CHARS})",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help="leave out candidates less likely than this (0..1, default: "
        f"{DEFAULT_MIN_CONFIDENCE:g}, suggestions shown are mostly right; 0: always the best "
        "guess)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve LSP on stdin/stdout until the editor exits: 0 after a shutdown request, else 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.max_chars <= MAX_COMPLETION_CHARS:
        parser.error(f"--max-chars must be between 1 and {MAX_COMPLETION_CHARS}")
    if not 0 <= args.min_confidence <= 1:
        parser.error("--min-confidence must be between 0 and 1")
    try:
        daemon = connection(args)  # a token or CA file that cannot be used: say so, at once
    except CompletiondError as exc:
        parser.error(str(exc))
    server = CompletionBridge(
        BridgeConfig(
            daemon=daemon,
            root=repo_root(args.repo),
            max_chars=args.max_chars,
            min_confidence=args.min_confidence,
        )
    )
    try:
        server.start_io()
    finally:
        server.close()
    return 0 if server.shutdown_requested else 1


if __name__ == "__main__":
    sys.exit(main())
