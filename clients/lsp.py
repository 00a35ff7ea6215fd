"""`completiond lsp`: a stdio language server that brings the daemon's completions to any editor.

The bridge keeps the editor's open documents (pygls applies incremental changes), warms the
daemon with them off the request path, and answers `textDocument/inlineCompletion` (ghost text)
and `textDocument/completion` (for editors without inline completion) from `Complete`. A newer
request for a document answers the older one empty at once and cancels its gRPC call; without a
daemon or a model every answer is empty and the editor is told once through `window/logMessage`.
Each suggestion shown is followed through the document's changes to one outcome (accepted,
partially accepted or dismissed), reported to the daemon's feedback counts.

Each document goes to the daemon of its own repository, started when none answers (unless
`--no-start`); while that daemon trains its first model the editor shows the run's progress
(`$/progress`), then one message when completions start.

This module is the server; which daemon serves a document, and starting it, lives in
`lsp_daemons.py`; what a candidate's edit is in `lsp_edits.py`, what became of a suggestion in
`lsp_feedback.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from completiond.core.errors import CompletiondError, DaemonUnreachable
from completiond.core.limits import DEFAULT_COMPLETION_CHARS, MAX_COMPLETION_CHARS
from completiond.core.locations import default_socket_path, repo_root
from completiond.core.version import __version__
from completiond.v1 import completion_pb2 as pb

from .client import Client, Connection, add_connection_options, connection
from .lsp_daemons import (
    DEFAULT_IDLE_EXIT_MIN,
    DEFAULT_MAX_FILES,
    Starter,
    answers,
    count_files,
    find_repository,
)
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
RECONNECT_AFTER_S = 5.0  # a daemon gone (its idle exit): looked for, or started, at most this often
PROGRESS_POLL_S = 0.5  # how often the first model's progress is asked for while it trains
FOLLOW_GIVE_UP_S = 10.0  # a daemon unreachable this long while followed: stop following it


@dataclass
class BridgeConfig:
    fixed: Connection | None  # --socket/--listen: every document goes to this one daemon
    root: Path  # with `fixed`: paths sent to it are relative to this repository
    opened: Path | None = None  # --repo: a directory the editor opened
    starter: Starter | None = field(default_factory=Starter)  # None: --no-start
    max_files: int = DEFAULT_MAX_FILES
    max_chars: int = DEFAULT_COMPLETION_CHARS
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
    """One repository's daemon: the gRPC client, made on first use (the daemon may start after
    the editor), and what the bridge knows of it."""

    connection: Connection
    root: Path  # paths sent to the daemon are relative to it
    client: Client | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    down: bool = False  # a failure was logged; the next one is not, until a success
    connecting: bool = False  # being looked for or started: failures meanwhile are expected
    last_connect: float = -RECONNECT_AFTER_S
    refused: bool = False  # no daemon for it (too large, or its start failed): told once
    following: bool = False  # its first model's progress is (or was) followed

    @property
    def socket(self) -> Path | None:
        address = self.connection.address
        return Path(address[len("unix://") :]) if address.startswith("unix://") else None

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
        self._fixed = _DaemonLink(config.fixed, config.root) if config.fixed else None
        self._links: dict[Path, _DaemonLink] = {}  # by repository root
        self._routes: dict[str, _DaemonLink | None] = {}  # by document URI, at its first sight
        self._opened: list[Path] = [config.opened] if config.opened else []
        self._told: set[str] = set()  # messages shown once
        self._progress_supported = False
        self.client_name = "lsp"  # the editor, from `initialize`, for feedback counts
        # Per (method, document): inline and list completions of one keystroke both go ahead.
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._warm_timers: dict[str, asyncio.TimerHandle] = {}
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completiond-warm")
        self._feedback = FeedbackTracker()
        self._reporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completiond-report")
        # Looking for daemons, starting them (a start waits seconds), following their training.
        self._connector = ThreadPoolExecutor(max_workers=4, thread_name_prefix="completiond-start")
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
        self._connector.shutdown(wait=False, cancel_futures=True)
        for link in self._all_links():
            self._reporter.submit(link.close)
        self._reporter.shutdown(wait=False)

    def _all_links(self) -> list[_DaemonLink]:
        return [self._fixed] if self._fixed else list(self._links.values())

    def on_initialize(self, params: types.InitializeParams) -> None:
        name = params.client_info.name if params.client_info else ""
        self.client_name = feedback_name(name)
        self._opened += _opened_folders(params)
        window = params.capabilities.window
        self._progress_supported = bool(window and window.work_done_progress)

    # Feedback: a suggestion shown is followed through the changes after it (FeedbackTracker);
    # an accepted item also runs ACCEPTED_COMMAND with its document's URI, where the editor runs
    # item commands. Reported to the daemon off the request path, in order, on a thread of their
    # own (never behind a slow Warm); losing one is harmless.

    def on_accepted(self, *arguments: object) -> None:
        uri = arguments[0] if arguments and isinstance(arguments[0], str) else None
        uri = uri or self._feedback.latest()
        if uri is not None:
            self._report(uri, self._feedback.accepted(uri))

    def _shown(
        self, document: TextDocument, position: types.Position, suggestions: list[Suggestion]
    ) -> None:
        row = position.line
        line_start = document.offset_at_position(types.Position(row, 0))
        lines = document.lines
        line = lines[row].rstrip("\r\n") if row < len(lines) else ""
        shown = Shown.at(row, line, suggestions[0].start - line_start, suggestions)
        self._report(document.uri, self._feedback.shown(document.uri, shown))

    def _report(self, uri: str, events: list[Event]) -> None:
        link = self._routes.get(uri)
        for event in events if link is not None else ():
            self._reporter.submit(self._report_now, link, event)

    def _report_now(self, link: _DaemonLink, event: Event) -> None:
        with contextlib.suppress(DaemonUnreachable, grpc.RpcError):
            link.get().feedback(self.client_name, event)

    # Documents: pygls keeps their text; the daemon gets it to read ahead of the first request.

    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self._route(params.text_document.uri)
        self._warm(params.text_document.uri)

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        if (timer := self._warm_timers.pop(uri, None)) is not None:
            timer.cancel()
        self._warm_timers[uri] = asyncio.get_running_loop().call_later(
            WARM_DEBOUNCE_S, self._warm, uri
        )
        lines = self.workspace.get_text_document(uri).lines
        self._report(uri, self._feedback.edited(uri, lines, params.content_changes))

    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if (timer := self._warm_timers.pop(uri, None)) is not None:
            timer.cancel()
        for key in [key for key in self._pending if key[1] == uri]:
            self._pending.pop(key).abandon()
        self._report(uri, self._feedback.closed(uri))

    def on_shutdown(self, params: None) -> None:
        self.shutdown_requested = True
        for uri, outcome in self._feedback.close_all():
            self._report(uri, [outcome])
        for timer in self._warm_timers.values():
            timer.cancel()
        for pending in self._pending.values():
            pending.abandon()

    def _warm(self, uri: str) -> None:
        self._warm_timers.pop(uri, None)
        link = self._routes.get(uri)
        if link is not None and uri in self.workspace.text_documents:
            text = self.workspace.get_text_document(uri).source
            loop = asyncio.get_running_loop()
            self._warmer.submit(self._warm_now, loop, link, uri, text, _path(uri, link.root))

    def _warm_now(
        self, loop: asyncio.AbstractEventLoop, link: _DaemonLink, uri: str, text: str, path: str
    ) -> None:
        """On the warm thread: the outcome is reported on the event loop, like any other."""
        try:
            link.get().warm(text, document_id=uri, path=path)
        except (DaemonUnreachable, grpc.RpcError) as error:
            _call_soon(loop, self._failed, link, error)
        else:
            _call_soon(loop, self._succeeded, link)

    # Routes: each document to its repository's daemon, looked for (and started) on first sight.

    def _route(self, uri: str) -> _DaemonLink | None:
        """The daemon of the document's repository; None when it gets none (told once)."""
        if uri in self._routes:
            return self._routes[uri]
        link = self._fixed or self._repository_link(uri)
        self._routes[uri] = link
        if link is not None and link is self._fixed:
            self._follow(link)  # given by --socket/--listen: it may be training its first model
        return link

    def _repository_link(self, uri: str) -> _DaemonLink | None:
        fs_path = to_fs_path(uri) if uri.startswith("file:") else None
        if fs_path is not None:
            root = find_repository(Path(fs_path), self._opened)
        else:  # an unsaved document: the first folder the editor opened, if any
            root = find_repository(self._opened[0] / "_", self._opened) if self._opened else None
        if root is None:
            where = fs_path or uri
            self._tell_once(
                "outside",
                f"completiond: no completions for {where} and other files outside any "
                "repository (not in a git work tree or a folder you opened)",
            )
            return None
        if root not in self._links:
            link = self._links[root] = _DaemonLink(
                Connection(f"unix://{default_socket_path(root)}"), root
            )
            self._connect(link)
        return self._links[root]

    def _connect(self, link: _DaemonLink) -> None:
        """Look for the link's daemon, or start it, off the event loop."""
        if link.connecting or link.refused:
            return
        link.connecting = True
        link.last_connect = time.monotonic()
        loop = asyncio.get_running_loop()
        future = self._connector.submit(self._find_or_start, link)
        future.add_done_callback(lambda done: _call_soon(loop, self._connected, link, done))

    def _find_or_start(self, link: _DaemonLink) -> str:
        """On a start thread: "running", "started", "none" (not started: --no-start), or why
        the repository gets no daemon."""
        socket_path = link.socket
        assert socket_path is not None
        if answers(socket_path):
            return "running"
        starter = self.config.starter
        if starter is None:
            return "none"
        if (files := count_files(link.root, self.config.max_files)) > self.config.max_files:
            return (
                f"too large: {files:,} files or more, the limit is {self.config.max_files:,} "
                "(`lsp --max-files`); start a daemon by hand if you want one"
            )
        return "started" if starter.ensure(link.root, socket_path) else "running"

    def _connected(self, link: _DaemonLink, done: Future[str]) -> None:
        link.connecting = False
        if done.cancelled():  # the bridge is closing
            return
        try:
            outcome = done.result()
        except (CompletiondError, OSError) as error:
            outcome = f"could not start its daemon: {error}"
        if outcome == "started" and (starter := self.config.starter) is not None:
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info,
                    message=f"completiond: started a daemon for {link.root} (it stops after "
                    f"{starter.idle_exit_minutes:g} min without a client; `completiond "
                    "status` there shows it)",
                )
            )
        if outcome in ("running", "started"):
            self._follow(link)
            for uri in [uri for uri, routed in self._routes.items() if routed is link]:
                self._warm(uri)
        elif outcome != "none":
            link.refused = True
            self._tell_once(
                str(link.root), f"completiond: no completions in {link.root}: {outcome}"
            )

    def _tell_once(self, key: str, message: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Warning, message=message)
            )

    # The first model: its training shown as work-done progress, then one message.

    def _follow(self, link: _DaemonLink) -> None:
        """Once per daemon: a daemon found with a model has nothing to show."""
        if not link.following:
            link.following = True
            asyncio.get_running_loop().create_task(self._follow_first_model(link))

    async def _follow_first_model(self, link: _DaemonLink) -> None:
        """Until the daemon serves a model: its training's progress in the editor."""
        loop = asyncio.get_running_loop()
        token = f"completiond/first-model/{link.root}"
        shown = False
        training = False  # seen without a model: its first model trains
        began = time.monotonic()
        unreachable_since: float | None = None
        try:
            while not self.shutdown_requested:
                try:
                    status = await loop.run_in_executor(self._connector, _status, link)
                except (DaemonUnreachable, grpc.RpcError):
                    unreachable_since = unreachable_since or time.monotonic()
                    if time.monotonic() - unreachable_since > FOLLOW_GIVE_UP_S:
                        return
                    await asyncio.sleep(PROGRESS_POLL_S)
                    continue
                unreachable_since = None
                if status.HasField("model"):
                    if training:
                        self._completions_start(link, status, time.monotonic() - began)
                    return
                training = True
                if not shown and self._progress_supported:
                    await self.work_done_progress.create_async(token)
                    self.work_done_progress.begin(token, _progress_begin(link.root))
                    shown = True
                if shown:
                    self.work_done_progress.report(token, _progress_report(status))
                await asyncio.sleep(PROGRESS_POLL_S)
        finally:
            if shown:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))

    def _completions_start(
        self, link: _DaemonLink, status: pb.StatusResponse, waited_s: float
    ) -> None:
        """The one message of a first model: completions start now."""
        self.window_show_message(
            types.ShowMessageParams(
                type=types.MessageType.Info,
                message=f"completiond: completions start in {link.root} (model "
                f"{status.model.version}, trained in {waited_s:.0f} s)",
            )
        )
        for uri in [uri for uri, routed in self._routes.items() if routed is link]:
            self._warm(uri)

    # Failures: empty answers, logged once until the daemon answers again.

    def _failed(self, link: _DaemonLink, error: Exception) -> None:
        if isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.CANCELLED:
            return
        if (
            link is not self._fixed
            and _gone(error)
            and (time.monotonic() - link.last_connect > RECONNECT_AFTER_S)
        ):
            self._connect(link)  # it stopped (its idle exit): find it again, or start it
        if not link.down and not link.connecting:
            link.down = True
            detail = error.details() if isinstance(error, grpc.RpcError) else str(error)
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Warning,
                    message=f"completiond: no completions ({detail})",
                )
            )

    def _succeeded(self, link: _DaemonLink) -> None:
        link.down = False

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
        link = self._route(uri)
        if link is None:
            return []
        try:
            client = link.get()
        except DaemonUnreachable as error:
            self._failed(link, error)
            return []
        waiter: asyncio.Future[None] = loop.create_future()
        call = client.completion.Complete.future(
            self._request(document, cursor, link.root),
            timeout=COMPLETE_TIMEOUT_S,
            metadata=client.metadata,
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
            self._failed(link, error)
            return []
        self._succeeded(link)
        return list(response.candidates)

    def _request(self, document: TextDocument, cursor: int, root: Path) -> pb.CompleteRequest:
        text = document.source
        return pb.CompleteRequest(
            prefix=text[:cursor],
            suffix=text[cursor:],
            path=_path(document.uri, root),
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


def _path(uri: str, root: Path) -> str:
    """The document's path relative to the repository (absolute outside it; "" unsaved)."""
    fs_path = to_fs_path(uri)
    if fs_path is None:
        return ""
    path = Path(fs_path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else fs_path


def _opened_folders(params: types.InitializeParams) -> list[Path]:
    """The directories the editor opened: its workspace folders, else its root."""
    uris = [folder.uri for folder in params.workspace_folders or []]
    if not uris and params.root_uri:
        uris = [params.root_uri]
    paths = [to_fs_path(uri) for uri in uris if uri.startswith("file:")]
    return [Path(path) for path in paths if path]


def _gone(error: Exception) -> bool:
    """Whether the failure may mean that no daemon listens (any more)."""
    if isinstance(error, DaemonUnreachable):
        return True
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


def _status(link: _DaemonLink) -> pb.StatusResponse:
    return link.get().status()


def _progress_begin(root: Path) -> types.WorkDoneProgressBegin:
    return types.WorkDoneProgressBegin(
        title=f"completiond: training a first model for {root.name}",
        message="starting",
        percentage=0,
        cancellable=False,
    )


def _progress_report(status: pb.StatusResponse) -> types.WorkDoneProgressReport:
    """The run's phase, percent and time left (nothing runs yet: reading the repository)."""
    if not status.HasField("training"):
        return types.WorkDoneProgressReport(message="reading the repository", percentage=0)
    run = status.training
    eta = f", about {run.eta_seconds:.0f} s left" if run.eta_seconds > 0 else ""
    return types.WorkDoneProgressReport(
        message=f"{run.phase}{eta}", percentage=round(100 * min(1.0, max(0.0, run.fraction)))
    )


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
        description="Language server on stdio: each document's repository daemon's completions "
        "in any editor (the daemon started when none runs).",
    )
    add_connection_options(
        parser,
        repo_help="a directory the editor opened: its documents outside any git work tree "
        "go to its daemon (each document goes to its own repository's daemon otherwise); with "
        "--socket/--listen, the repository of that daemon (default: the current directory)",
    )
    parser.set_defaults(repo=None)  # given or not: only a given one is a folder opened
    parser.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_COMPLETION_CHARS,
        help=f"longest completion (default: {DEFAULT_COMPLETION_CHARS}, max "
        f"{MAX_COMPLETION_CHARS})",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help="leave out candidates less likely than this (0..1, default: "
        f"{DEFAULT_MIN_CONFIDENCE:g}, suggestions shown are mostly right; 0: always the best "
        "guess)",
    )
    _add_start_options(parser)
    return parser


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    """Whether and how the bridge starts the daemons of repositories that have none."""
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="never start a daemon: a repository without a running one gets no completions",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=DEFAULT_IDLE_EXIT_MIN,
        metavar="MIN",
        help="a daemon the bridge starts stops after MIN minutes with no client call (default: "
        f"{DEFAULT_IDLE_EXIT_MIN:g})",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=DEFAULT_MAX_FILES,
        metavar="N",
        help="start no daemon for a repository of more than N files (default: "
        f"{DEFAULT_MAX_FILES})",
    )
    parser.add_argument(
        "--serve-args",
        default="",
        metavar="ARGS",
        help="more `completiond serve` options for the daemons it starts, one shell-quoted "
        "string (e.g. --serve-args='--minutes 2 --no-watch')",
    )


def _starter(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Starter | None:
    if args.no_start:
        return None
    if not args.idle_exit > 0:
        parser.error("--idle-exit must be a positive number of minutes")
    try:
        serve_args = tuple(shlex.split(args.serve_args))
    except ValueError as exc:
        parser.error(f"--serve-args: {exc}")
    return Starter(args.idle_exit, serve_args)


def main(argv: list[str] | None = None) -> int:
    """Serve LSP on stdin/stdout until the editor exits: 0 after a shutdown request, else 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.max_chars <= MAX_COMPLETION_CHARS:
        parser.error(f"--max-chars must be between 1 and {MAX_COMPLETION_CHARS}")
    if not 0 <= args.min_confidence <= 1:
        parser.error("--min-confidence must be between 0 and 1")
    fixed = None
    if args.socket or args.listen:
        try:
            fixed = connection(args)  # a token or CA file that cannot be used: say so, at once
        except CompletiondError as exc:
            parser.error(str(exc))
    server = CompletionBridge(
        BridgeConfig(
            fixed=fixed,
            root=repo_root(args.repo or Path.cwd()),
            opened=args.repo.resolve() if args.repo else None,
            starter=_starter(parser, args),
            max_files=args.max_files,
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
