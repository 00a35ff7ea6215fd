"""The LSP bridge: its edit post-processing against golden cases, and real language-server
sessions (a subprocess spoken to over stdio) against a real daemon and a slow fake one.

Golden cases, `tests/golden/postprocess/*.txt`: header lines `key: value` (the value is everything
after ": ", leading blanks included; `#` lines are comments), a `---` line, then the document
verbatim with the cursor marked `║`. Keys: `candidate` (the daemon's text), `expected` (the
cursor's line after accepting, or `(no item)`), optional `word` (the identifier before the cursor
that a completion item's edit starts at; default none) and `line-endings: crlf` (the document's
line breaks become CRLF).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from completiond.clients.lsp import plan_edit
from completiond.daemon.daemon import Daemon
from completiond.v1 import completion_pb2 as pb
from completiond.v1 import completion_pb2_grpc as pb_grpc

CURSOR = "║"
GOLDEN = sorted((Path(__file__).parent / "golden" / "postprocess").glob("*.txt"))
WAIT_S = 30.0  # the longest any test waits for one message; a cold first completion included


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


# --- Language-server sessions -------------------------------------------------------------------


@dataclass
class LspSession:
    """The bridge as a subprocess, spoken to in Content-Length framed JSON-RPC; waits bounded."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    inbox: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 0

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            length = None
            while (line := stdout.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not line or length is None:
                self.inbox.put(None)
                return
            self.inbox.put(json.loads(stdout.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def request(self, method: str, params: Any) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def response(self, msg_id: int, limit_s: float = WAIT_S) -> dict[str, Any]:
        """The response to request `msg_id`; notifications that come first are kept."""
        deadline = time.monotonic() + limit_s
        while msg_id not in self.responses:
            try:
                message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no response to request {msg_id} within {limit_s} s{self.log()}")
            if message is None:
                pytest.fail(f"the server exited with {self.proc.wait(5)}{self.log()}")
            if "method" not in message:
                self.responses[message["id"]] = message
            elif "id" in message:  # a request from the server: answer it, as editors do
                self.send({"id": message["id"], "result": None})
            else:
                self.notifications.append(message)
        return self.responses.pop(msg_id)

    def call(self, method: str, params: Any) -> Any:
        reply = self.response(self.request(method, params))
        assert "error" not in reply, reply
        return reply["result"]

    def initialize(self, root: Path) -> dict[str, Any]:
        capabilities = {"textDocument": {"inlineCompletion": {}, "completion": {}}}
        result = self.call(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": capabilities,
                "clientInfo": {"name": "Test Editor"},
            },
        )
        self.notify("initialized", {})
        return result["capabilities"]

    def open(self, uri: str, text: str) -> None:
        document = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": document})

    def stop(self) -> int:
        """shutdown then exit, as an editor closes: the exit status."""
        assert self.call("shutdown", None) is None
        self.notify("exit", None)
        return self.proc.wait(timeout=WAIT_S)

    def log(self) -> str:
        return "\n--- server stderr:\n" + self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.reader.join(timeout=WAIT_S)


@pytest.fixture
def start_lsp(tmp_path: Path) -> Iterator[Callable[..., LspSession]]:
    """Starts `python -m completiond.clients.lsp ARGS...`; every session is killed at the end."""
    sessions: list[LspSession] = []

    def start(*args: str) -> LspSession:
        stderr_path = tmp_path / f"lsp-{len(sessions)}.log"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "completiond.clients.lsp", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        sessions.append(LspSession(proc, stderr_path))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()


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

    # Accepting runs the item's command; the daemon counts it for the editor that said so.
    assert items[0]["command"]["command"] == "completiond.accepted"
    lsp.call("workspace/executeCommand", {"command": "completiond.accepted", "arguments": []})
    deadline = time.monotonic() + WAIT_S
    while running_daemon.feedback.snapshot().get("test-editor", {}).get("accepted", 0) < 1:
        assert time.monotonic() < deadline, running_daemon.feedback.snapshot()
        time.sleep(0.05)
    counts = running_daemon.feedback.snapshot()["test-editor"]
    assert counts["accepted"] == 1 and counts["shown"] >= 2

    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
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
