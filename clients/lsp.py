"""`completiond lsp`: a stdio language server that brings the daemon's completions to any editor.

The bridge keeps the editor's open documents (pygls applies incremental changes), warms the
daemon with them off the request path, and answers `textDocument/inlineCompletion` (ghost text)
and `textDocument/completion` (for editors without inline completion) from `Complete`. A newer
request for a document answers the older one empty at once and cancels its gRPC call; without a
daemon or a model every answer is empty and the editor is told once through `window/logMessage`.
Each suggestion shown is followed through the document's changes to one outcome (accepted,
partially accepted or dismissed), reported to the daemon's feedback counts.

This module is the server; what a candidate's edit is lives in `lsp_edits.py`, what became of a
suggestion in `lsp_feedback.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

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
from .lsp_edits import Planned, Suggestion, completion_items, inline_items, plan_edits
from .lsp_feedback import Event, FeedbackTracker, Shown, feedback_name

CANDIDATES = 3  # asked per request: inline completion cycles through them, completion lists them
COMPLETE_TIMEOUT_S = 5.0  # a completion later than this is no longer wanted
WARM_TIMEOUT_S = 30.0  # reading a long document cold can take a while; nobody waits on it
WARM_DEBOUNCE_S = 0.5  # after the last change: one Warm per pause in typing, not per keystroke
# Ghost text should be right when it shows: the default asks for suggestions that are mostly
# right (docs/completion.md, "Minimum confidence", has the measurements); 0 always shows the
# best guess.
DEFAULT_MIN_CONFIDENCE = 0.6
ACCEPTED_COMMAND = "completiond.accepted"  # run by the editor when an item is accepted


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
        self.client_name = feedback_name(name)

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
        waiter: asyncio.Future[None] = loop.create_future()
        call = client.completion.Complete.future(
            self._request(document, cursor), timeout=COMPLETE_TIMEOUT_S, metadata=client.metadata
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

    def _request(self, document: TextDocument, cursor: int) -> pb.CompleteRequest:
        text = document.source
        return pb.CompleteRequest(
            prefix=text[:cursor],
            suffix=text[cursor:],
            path=self._path(document.uri),
            document_id=document.uri,
            n=CANDIDATES,
            max_chars=self.config.max_chars,
            min_confidence=self.config.min_confidence,
        )

    async def _suggestions(
        self, method: str, uri: str, position: types.Position
    ) -> tuple[TextDocument, list[Planned]]:
        document = self.workspace.get_text_document(uri)
        if uri not in self.workspace.text_documents:
            return document, []  # never opened: pygls would read the disk; nothing to complete
        cursor = document.offset_at_position(position)
        text = document.source
        candidates = await self._candidates(method, document, cursor)
        if document.source != text:  # changed meanwhile: the editor drops the answer anyway
            return document, []
        return document, plan_edits(text, cursor, [(c.text, c.confidence) for c in candidates])

    async def inline_completion(
        self, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        document, found = await self._suggestions(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params.text_document.uri, params.position
        )
        if found:
            self._shown(document, params.position, [s for s, _ in found])
        items = inline_items(document, params.position, found, _accepted(document.uri))
        return types.InlineCompletionList(items=items)

    async def completion(self, params: types.CompletionParams) -> types.CompletionList:
        document, found = await self._suggestions(
            types.TEXT_DOCUMENT_COMPLETION, params.text_document.uri, params.position
        )
        items = completion_items(document, params.position, found, _accepted(document.uri))
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
