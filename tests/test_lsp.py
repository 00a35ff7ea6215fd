"""The LSP bridge: its edit post-processing against golden cases, how it tells what became of a
suggestion, and real language-server sessions (a subprocess spoken to over stdio) against a real
daemon and a slow fake one.

Golden cases, `tests/golden/postprocess/*.txt`: header lines `key: value` (the value is everything
after ": ", leading blanks included; `#` lines are comments), a `---` line, then the document
verbatim with the cursor marked `║`. Keys: `candidate` (the daemon's text), `expected` (the
cursor's line after accepting, or `(no item)`), optional `word` (the identifier before the cursor
that a completion item's edit starts at; default none) and `line-endings: crlf` (the document's
line breaks become CRLF).
"""

from __future__ import annotations

import io
import queue
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lsprotocol import types

from completiond.clients.client import Client
from completiond.clients.lsp_edits import plan_edit
from completiond.clients.lsp_feedback import FeedbackTracker, Shown, feedback_name
from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import ModelStore
from completiond.daemon.access import create_token, read_tls_key_pair
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.watcher import WatchConfig
from completiond.v1 import completion_pb2 as pb
from completiond.v1 import completion_pb2_grpc as pb_grpc

from .conftest import TlsFiles
from .lsp_session import WAIT_S, LspSession

CURSOR = "║"
GOLDEN = sorted((Path(__file__).parent / "golden" / "postprocess").glob("*.txt"))


@dataclass
class Golden:
    document: str
    headers: dict[str, str]


def load_golden(path: Path) -> Golden:
    head, document = path.read_text(encoding="utf-8").split("\n---\n", 1)
    headers = {}
    for line in head.splitlines():
        if not line.startswith("#"):
            key, _, value = line.partition(": ")
            headers[key] = value
    if headers.get("line-endings") == "crlf":
        document = document.replace("\n", "\r\n")
    return Golden(document, headers)


def test_there_are_golden_cases() -> None:
    assert len(GOLDEN) >= 8


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_postprocess_golden(path: Path) -> None:
    case = load_golden(path)
    cursor = case.document.index(CURSOR)
    text = case.document.replace(CURSOR, "", 1)
    suggestion = plan_edit(text, cursor, case.headers["candidate"])
    if case.headers["expected"] == "(no item)":
        assert suggestion is None
        return
    assert suggestion is not None and suggestion.start == cursor
    lines = case.document.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if CURSOR in line)
    ending = lines[row][len(lines[row].rstrip("\r\n")) :]
    lines[row] = case.headers["expected"] + ending
    accepted = text[: suggestion.start] + suggestion.insert + text[suggestion.end :]
    assert accepted == "".join(lines)  # only the cursor's line changed, line breaks kept
    assert suggestion.line == case.headers["expected"]
    assert text[suggestion.word_start : suggestion.start] == case.headers.get("word", "")


# --- Feedback: what became of a suggestion --------------------------------------------------------


def shown_at(line: str, column: int, *candidates: str, row: int = 0) -> Shown:
    """What the bridge follows once the daemon's `candidates` are shown at `column` of `line`."""
    suggestions = [s for c in candidates if (s := plan_edit(line, column, c)) is not None]
    return Shown.at(row, line, column, suggestions)


# `    return re║` showing what the fixture model answers there.
RETURN = shown_at("    return re", 13, "spond(value)", "spond(None)", "s", row=4)


def follow(shown: Shown, *lines: str) -> Shown | str:
    """The line changed to each of `lines` in turn: the suggestion still open, or its outcome."""
    for line in lines:
        followed = shown.follow(line)
        if not isinstance(followed, Shown):
            return followed
        shown = followed
    return shown


@pytest.mark.parametrize(
    ("lines", "outcome"),
    [
        (["    return respond(value)"], "accepted"),  # in one change
        (["    return res", "    return resp", "    return respond(value)"], "accepted"),
        (["    return respond(None)"], "accepted"),  # another candidate
        # Typed along with an editor that adds `)` for `(`, then types over it.
        (["    return respond", "    return respond()", "    return respond(value)"], "accepted"),
        (["    return respond", "    return respondx"], "partially_accepted"),  # a word, then off
        (["    return respond", "    return respon"], "partially_accepted"),  # a word, then back
        (["    return rex"], "dismissed"),
        (["    return res", "    return resx"], "dismissed"),  # typed one, then off
        (["    return r"], "dismissed"),  # a deletion
        (["    return res", "    return re"], "dismissed"),
        (["    return re)"], "dismissed"),  # a closer with nothing open
        (["    return re "], "dismissed"),
        (["    return respond(value) + 1"], "dismissed"),  # more than the suggestion at once
    ],
)
def test_a_suggestion_followed_through_changes(lines: list[str], outcome: str) -> None:
    assert follow(RETURN, *lines) == outcome


def test_a_suggestion_stays_open_while_the_line_goes_along_it() -> None:
    typed = follow(RETURN, "    return res", "    return resp")
    assert isinstance(typed, Shown) and (typed.typed, typed.partial) == (2, False)
    assert typed.outcome() == "dismissed"  # were the cursor to leave now
    word = follow(RETURN, "    return respond")  # a word in one change: partly accepted so far
    assert isinstance(word, Shown) and (word.typed, word.partial) == (5, True)
    assert word.outcome() == "partially_accepted"
    # `s`, a whole candidate that longer ones go on from: open, and accepted if left there.
    short = follow(RETURN, "    return res")
    assert isinstance(short, Shown) and short.outcome() == "accepted"
    # Inside an auto-inserted `)` that the suggestion replaces.
    inside = shown_at("f(x, )", 5, "y)")
    assert inside.inserts == ("y)",)
    assert follow(inside, "f(x, y)") == "accepted"
    assert follow(inside, "f(x, z)") == "dismissed"
    # A quote the editor closed: `"` typed, `"` added, the suggestion goes on inside.
    quoted = follow(shown_at("x = ", 4, '"abc"'), 'x = ""', 'x = "a"')
    assert isinstance(quoted, Shown) and (quoted.typed, quoted.partial) == (2, False)
    # A candidate that ends with the rest of the line replaces it: accepted as the bridge planned.
    whole = shown_at("y = f() + 1", 6, "x) + 1")  # `f(║) + 1`
    assert follow(whole, whole.targets[0]) == "accepted"


def change(row: int, start: int, end: int, text: str) -> types.TextDocumentContentChangePartial:
    span = types.Range(types.Position(row, start), types.Position(row, end))
    return types.TextDocumentContentChangePartial(range=span, text=text)


def test_every_suggestion_shown_gets_one_outcome() -> None:
    tracker = FeedbackTracker()
    uri, other = "file:///a.py", "file:///b.py"
    lines = ["def f(request):\n", "    return re"]
    shown = shown_at(lines[1], 13, "spond(value)", row=1)
    assert tracker.shown(uri, shown) == ["shown"]
    # Asked again at the same place, or further along it: the same suggestion, counted once.
    assert tracker.shown(uri, shown) == []
    assert tracker.edited(uri, [lines[0], "    return res"], [change(1, 13, 13, "s")]) == []
    assert tracker.shown(uri, shown_at("    return res", 14, "pond(value)", row=1)) == []
    done = [lines[0], "    return respond(value)"]
    assert tracker.edited(uri, done, [change(1, 14, 14, "pond(value)")]) == ["accepted"]
    assert tracker.accepted(uri) == []  # the item's command after the change: counted already
    assert tracker.edited(uri, done, [change(1, 0, 0, " ")]) == []  # nothing open

    # The command before the change (editors that debounce didChange): accepted once.
    assert tracker.shown(uri, shown) == ["shown"]
    assert tracker.accepted(uri) == ["accepted"]
    assert tracker.edited(uri, done, [change(1, 13, 13, "spond(value)")]) == []

    # A new suggestion elsewhere supersedes the open one; a word of it came first.
    assert tracker.shown(uri, shown) == ["shown"]
    assert tracker.edited(uri, [lines[0], "    return respond"], [change(1, 13, 13, "spond")]) == []
    elsewhere = shown_at("def f(request):", 15, " -> None:")
    assert tracker.shown(uri, elsewhere) == ["partially_accepted", "shown"]
    # The cursor leaves the line: a change of another line, or a line break.
    assert tracker.edited(uri, lines, [change(1, 0, 0, "")]) == ["dismissed"]
    assert tracker.shown(uri, shown) == ["shown"]
    assert tracker.edited(uri, [*lines, ""], [change(1, 13, 13, "\n")]) == ["dismissed"]

    # Closing the document, or the editor, resolves what is open; documents are apart.
    assert tracker.shown(uri, shown) == ["shown"]
    assert tracker.shown(other, shown) == ["shown"]
    assert tracker.closed(uri) == ["dismissed"]
    assert tracker.closed(uri) == []
    assert tracker.accepted(None) == ["accepted"]  # no document given: the latest shown
    assert tracker.shown(uri, shown) == ["shown"]
    assert tracker.shown(other, shown) == ["shown"]
    assert tracker.close_all() == [(uri, "dismissed"), (other, "dismissed")]
    assert tracker.close_all() == []


# --- Language-server sessions -------------------------------------------------------------------


def position_params(uri: str, line: int, character: int) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


def inline_params(uri: str, line: int, character: int) -> dict[str, Any]:
    return {**position_params(uri, line, character), "context": {"triggerKind": 2}}


def apply_edit(line: str, start: int, end: int, new_text: str) -> str:
    return line[:start] + new_text + line[end:]


HANDLER = (
    'def handler_999(request):\n    value = request.get("key_999")\n'
    "    if value is None:\n        return respond(None)\n    return re"
)
NO_FEEDBACK = {"shown": 0, "accepted": 0, "partially_accepted": 0, "dismissed": 0}


def wait_for_feedback(daemon: Daemon, **counts: int) -> None:
    """Until the daemon's status shows these counts for the test editor (reports are sent off
    the request path); bounded."""
    expected = {**NO_FEEDBACK, **counts}
    deadline = time.monotonic() + WAIT_S
    with Client(f"unix://{daemon.server.config.socket_path}", timeout_s=WAIT_S) as client:
        while True:
            found = {
                item.client: {event: getattr(item, event) for event in NO_FEEDBACK}
                for item in client.status().feedback
            }.get("test-editor", NO_FEEDBACK)
            if found == expected:
                return
            assert time.monotonic() < deadline, f"feedback {found}, expected {expected}"
            time.sleep(0.02)


def test_a_session_with_a_real_daemon(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    socket = str(running_daemon.server.config.socket_path)
    lsp = start_lsp("--socket", socket, "--repo", str(fixture_repo))
    capabilities = lsp.initialize(fixture_repo)
    assert capabilities["inlineCompletionProvider"] is not None
    assert capabilities["completionProvider"] is not None
    uri = (fixture_repo / "new_handlers.py").as_uri()
    lsp.open(uri, HANDLER)
    row, col = 4, len("    return re")

    inline = lsp.call("textDocument/inlineCompletion", inline_params(uri, row, col))
    best = inline["items"][0]
    assert best["insertText"] == "spond(value)"
    assert best["range"] == {
        "start": {"line": row, "character": col},
        "end": {"line": row, "character": col},
    }

    listed = lsp.call("textDocument/completion", position_params(uri, row, col))
    assert listed["isIncomplete"] is True
    top = min(listed["items"], key=lambda item: item["sortText"])
    edit = top["textEdit"]
    assert top["label"] == "return respond(value)"
    assert edit["newText"] == "respond(value)"
    assert edit["range"]["start"] == {"line": row, "character": len("    return ")}

    # The editor auto-inserted ")" after "respond(": accepting must not leave "value))".
    change = {
        "range": {"start": {"line": row, "character": col}, "end": {"line": row, "character": col}},
        "text": "spond()",
    }
    lsp.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
    )
    cursor = len("    return respond(")
    items = lsp.call("textDocument/inlineCompletion", inline_params(uri, row, cursor))["items"]
    assert items, "no completion inside the auto-inserted brackets"
    span = items[0]["range"]
    accepted = apply_edit(
        "    return respond()",
        span["start"]["character"],
        span["end"]["character"],
        items[0]["insertText"],
    )
    assert accepted == "    return respond(value)"

    # Accepting runs the item's command; the daemon counts it for the editor that said so. All
    # answers so far showed one suggestion (`spond(value)`, typed along to `spond(`).
    command = items[0]["command"]
    assert command == {
        "title": "completiond: suggestion accepted",
        "command": "completiond.accepted",
        "arguments": [uri],
    }
    lsp.call("workspace/executeCommand", {k: command[k] for k in ("command", "arguments")})
    wait_for_feedback(running_daemon, shown=1, accepted=1)

    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert lsp.stop() == 0
    assert "Traceback" not in lsp.log()


def test_the_bridge_reaches_a_tcp_daemon_with_a_token_over_tls(
    fixture_repo: Path,
    trained_store: ModelStore,
    tls_files: TlsFiles,
    tmp_path: Path,
    start_lsp: Callable[..., LspSession],
) -> None:
    token_file = tmp_path / "token"
    store = tmp_path / "store"  # a copy: the daemon writes its feedback counts there
    shutil.copytree(trained_store.root, store)
    server = ServerConfig(
        listen="127.0.0.1:0",
        token=create_token(token_file),
        tls=read_tls_key_pair(tls_files.cert, tls_files.key),
    )
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo, store=store, server=server, watch=WatchConfig(enabled=False)
        )
    )
    daemon.start(io.StringIO())
    try:
        lsp = start_lsp(
            "--listen", daemon.server.address, "--token-file", str(token_file),
            "--tls-ca", str(tls_files.ca), "--repo", str(fixture_repo),
        )  # fmt: skip
        lsp.initialize(fixture_repo)
        uri = (fixture_repo / "new_handlers.py").as_uri()
        lsp.open(uri, HANDLER)
        inline = lsp.call("textDocument/inlineCompletion", inline_params(uri, 4, 13))
        assert inline["items"][0]["insertText"] == "spond(value)"
        assert lsp.stop() == 0
    finally:
        daemon.close()


def start_showing(
    daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> tuple[LspSession, str]:
    """A session whose editor shows `spond(value)` at `    return re║` (HANDLER's last line)."""
    lsp = start_lsp("--socket", str(daemon.server.config.socket_path), "--repo", str(fixture_repo))
    lsp.initialize(fixture_repo)
    uri = (fixture_repo / "new_handlers.py").as_uri()
    lsp.open(uri, HANDLER)
    inline = lsp.call("textDocument/inlineCompletion", inline_params(uri, 4, len("    return re")))
    assert inline["items"][0]["insertText"] == "spond(value)"
    wait_for_feedback(daemon, shown=1)
    return lsp, uri


def test_typing_the_suggestion_counts_as_accepted(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp, uri = start_showing(running_daemon, fixture_repo, start_lsp)
    column = len("    return re")
    for offset, char in enumerate("spond(value)"):
        lsp.type(uri, 2 + offset, 4, column + offset, char)
    wait_for_feedback(running_daemon, shown=1, accepted=1)
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert lsp.stop() == 0  # nothing was left open: no more outcomes
    wait_for_feedback(running_daemon, shown=1, accepted=1)


def test_a_word_then_something_else_counts_as_partially_accepted(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp, uri = start_showing(running_daemon, fixture_repo, start_lsp)
    column = len("    return re")
    lsp.type(uri, 2, 4, column, "spond")  # one change: a word-wise accept
    lsp.type(uri, 3, 4, column + len("spond"), "x")
    wait_for_feedback(running_daemon, shown=1, partially_accepted=1)
    assert lsp.stop() == 0


def test_typing_on_from_a_suggestion_brings_back_only_its_first_word(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    running_daemon.slot.declined.declined_below = 2.0  # above 1: any (the fixture is sure)
    lsp, uri = start_showing(running_daemon, fixture_repo, start_lsp)
    column = len("    return re")
    lsp.type(uri, 2, 4, column, "s")  # typed on instead of accepting `spond(value)`
    inline = lsp.call("textDocument/inlineCompletion", inline_params(uri, 4, column + 1))
    assert inline["items"][0]["insertText"] == "pond"
    assert lsp.stop() == 0


def test_an_editor_is_offered_the_end_of_a_name_defined_once_above(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    # The default confidence weights (the fixture's own fit trusts any line seen once).
    served = running_daemon.slot.get().decoder.retriever
    assert served is not None
    served.config = RetrievalConfig()
    socket = str(running_daemon.server.config.socket_path)
    lsp = start_lsp("--socket", socket, "--min-confidence", "0.5")
    lsp.initialize(fixture_repo)
    uri = (fixture_repo / "parsing.py").as_uri()
    text = 'import re\n\n_embedded_marker = re.compile("x")\n\n\ndef parse(value):\n    if _emb'
    lsp.open(uri, text)
    # No line of the repository or the file goes on from here as surely as the bridge's 0.5.
    inline = lsp.call("textDocument/inlineCompletion", inline_params(uri, 6, len("    if _emb")))
    assert [item["insertText"] for item in inline["items"]] == ["edded_marker"]
    assert lsp.stop() == 0


def test_typing_something_else_counts_as_dismissed(
    running_daemon: Daemon, fixture_repo: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp, uri = start_showing(running_daemon, fixture_repo, start_lsp)
    lsp.type(uri, 2, 4, len("    return re"), "x")
    wait_for_feedback(running_daemon, shown=1, dismissed=1)
    assert lsp.stop() == 0
    assert "Traceback" not in lsp.log()


def test_without_a_daemon_answers_are_empty_and_logged_once(
    tmp_path: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp = start_lsp("--socket", str(tmp_path / "nobody.sock"), "--repo", str(tmp_path))
    lsp.initialize(tmp_path)
    uri = (tmp_path / "a.py").as_uri()
    lsp.open(uri, "def f(")
    for _ in range(2):
        assert lsp.call("textDocument/inlineCompletion", inline_params(uri, 0, 6)) == {"items": []}
        assert lsp.call("textDocument/completion", position_params(uri, 0, 6))["items"] == []
    logged = [n for n in lsp.notifications if n["method"] == "window/logMessage"]
    assert len(logged) == 1 and "no daemon" in logged[0]["params"]["message"]
    assert lsp.stop() == 0


class SlowDaemon(pb_grpc.CompletionServiceServicer):
    """Answers Complete only when the client gives up, and reports when each call starts and
    ends, so that a test sees the bridge cancel the calls it no longer needs."""

    def __init__(self) -> None:
        self.started: queue.Queue[str] = queue.Queue()
        self.ended: queue.Queue[str] = queue.Queue()

    def Complete(self, request: pb.CompleteRequest, context: grpc.ServicerContext) -> Any:
        self.started.put(request.prefix)
        deadline = time.monotonic() + WAIT_S
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.ended.put(request.prefix)
        return pb.CompleteResponse(candidates=[pb.Candidate(text="too late", confidence=1.0)])

    def Warm(self, request: pb.WarmRequest, context: grpc.ServicerContext) -> Any:
        return pb.WarmResponse(chars_read=len(request.text))


@pytest.fixture
def slow_daemon(tmp_path: Path) -> Iterator[tuple[SlowDaemon, Path]]:
    servicer = SlowDaemon()
    socket = tmp_path / "slow.sock"
    with futures.ThreadPoolExecutor(max_workers=4) as pool:
        server = grpc.server(pool)
        pb_grpc.add_CompletionServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"unix://{socket}")
        server.start()
        yield servicer, socket
        server.stop(grace=None).wait(WAIT_S)


def test_a_newer_request_or_a_cancel_stops_the_older_call(
    slow_daemon: tuple[SlowDaemon, Path], tmp_path: Path, start_lsp: Callable[..., LspSession]
) -> None:
    daemon, socket = slow_daemon
    lsp = start_lsp("--socket", str(socket), "--repo", str(tmp_path))
    lsp.initialize(tmp_path)
    uri = (tmp_path / "a.py").as_uri()
    lsp.open(uri, "first\nsecond")

    older = lsp.request("textDocument/inlineCompletion", inline_params(uri, 0, 5))
    assert daemon.started.get(timeout=WAIT_S) == "first"
    # A list completion of the same keystroke is no newer inline request: both go ahead.
    listed = lsp.request("textDocument/completion", position_params(uri, 1, 3))
    assert daemon.started.get(timeout=WAIT_S) == "first\nsec"
    began = time.monotonic()
    newer = lsp.request("textDocument/inlineCompletion", inline_params(uri, 1, 6))
    assert lsp.response(older)["result"] == {"items": []}  # answered empty at once
    assert time.monotonic() - began < 5
    assert daemon.ended.get(timeout=WAIT_S) == "first"  # and its gRPC call cancelled

    assert daemon.started.get(timeout=WAIT_S) == "first\nsecond"
    for request, prefix in ((newer, "first\nsecond"), (listed, "first\nsec")):
        lsp.notify("$/cancelRequest", {"id": request})
        assert lsp.response(request)["error"]["code"] == -32800  # RequestCancelled
        assert daemon.ended.get(timeout=WAIT_S) == prefix
    assert lsp.stop() == 0


def test_a_request_for_a_document_never_opened_is_answered_empty(
    running_daemon: Daemon, tmp_path: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp = start_lsp("--socket", str(running_daemon.server.config.socket_path))
    lsp.initialize(tmp_path)
    uri = (tmp_path / "not_yet_saved.py").as_uri()  # no didOpen, no file on disk
    assert lsp.call("textDocument/inlineCompletion", inline_params(uri, 0, 0))["items"] == []
    assert lsp.stop() == 0
    assert "Traceback" not in lsp.log()


@pytest.mark.parametrize(
    ("editor", "name"),
    [
        ("Visual Studio Code", "visual-studio-code"),
        ("Neovim", "neovim"),
        ("Zed (préversion) [beta]", "zed-pr-version-beta"),
        ("emacs+eglot 1.17", "emacs+eglot-1.17"),
        ("", "lsp"),
        ("<<>>", "lsp"),
        ("x" * 50, "x" * 32),
    ],
)
def test_every_editor_name_is_one_the_daemon_accepts_for_feedback(editor: str, name: str) -> None:
    from completiond.daemon.feedback import _CLIENT_NAME

    assert feedback_name(editor) == name
    assert _CLIENT_NAME.fullmatch(feedback_name(editor))
