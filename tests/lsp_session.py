"""A language-server session with the bridge (`completiond lsp`) as a subprocess, for tests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WAIT_S = 30.0  # the longest any test waits for one message; a cold first completion included


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
            self._take(deadline, f"no response to request {msg_id} within {limit_s} s")
        return self.responses.pop(msg_id)

    def wait_for(
        self, what: str, found: Callable[[list[dict[str, Any]]], bool], limit_s: float = WAIT_S
    ) -> None:
        """Until `found(notifications)` holds (`what` says what it waits for)."""
        deadline = time.monotonic() + limit_s
        while not found(self.notifications):
            self._take(deadline, f"not within {limit_s} s: {what}")

    def _take(self, deadline: float, failure: str) -> None:
        """The next message from the server, kept where it belongs."""
        try:
            message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"{failure}{self.log()}")
        if message is None:
            pytest.fail(f"the server exited with {self.proc.wait(5)}{self.log()}")
        if "method" not in message:
            self.responses[message["id"]] = message
        elif "id" in message:  # a request from the server: answer it, as editors do
            self.send({"id": message["id"], "result": None})
        else:
            self.notifications.append(message)

    def call(self, method: str, params: Any) -> Any:
        reply = self.response(self.request(method, params))
        assert "error" not in reply, reply
        return reply["result"]

    def type(self, uri: str, version: int, row: int, character: int, text: str) -> None:
        """An edit inserting `text` at (row, character), as the editor sends it."""
        at = {"line": row, "character": character}
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": {"start": at, "end": at}, "text": text}],
            },
        )

    def initialize(self, root: Path, more: dict[str, Any] | None = None) -> dict[str, Any]:
        """`more`: capabilities besides the completions' (e.g. work-done progress)."""
        capabilities = {"textDocument": {"inlineCompletion": {}, "completion": {}}, **(more or {})}
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


def lsp_sessions(tmp_path: Path) -> Iterator[Callable[..., LspSession]]:
    """Starts `python -m completiond.clients.lsp ARGS...`, showing every candidate (the tiny
    model is rarely sure: the default threshold would hide most); every session is killed at
    the end."""
    sessions: list[LspSession] = []

    def start(*args: str) -> LspSession:
        stderr_path = tmp_path / f"lsp-{len(sessions)}.log"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "completiond.clients.lsp", "--min-confidence", "0", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        sessions.append(LspSession(proc, stderr_path))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()
