"""The LSP bridge finds, and starts, each document's repository daemon: real bridge processes
over stdio, real daemons (started by the bridge as processes, or in this process on the
repository's default socket), tiny models.

Every daemon a test starts is stopped at its end: the bridge's by their process ids (found by
their command line, which names the test's temporary directory), the in-process ones by `close`.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from completiond.clients.client import Client
from completiond.clients.lsp_daemons import LOG_FILE
from completiond.core.bundle import ModelStore
from completiond.core.locations import default_socket_path, default_store_dir
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.watcher import WatchConfig

from .conftest import make_repo, serve_pids
from .lsp_session import LspSession
from .test_lsp import HANDLER, inline_params

WAIT_S = 60.0  # the longest any wait here lasts: a first model's training included
# The daemons the bridge starts: a tiny model trained for seconds, no watching, short retrains.
TINY_SERVE = "--minutes 0.1 --hidden-size 48 --no-watch --retrain-minutes 0.05"
PROGRESS = {"window": {"workDoneProgress": True}}
COLUMN = len("    return re")  # the end of HANDLER's last line


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        time.sleep(0.05)


@pytest.fixture
def kill_daemons(tmp_path: Path) -> Iterator[None]:
    """At the end: every serve process of a repository under this test's directory."""
    yield
    for root in tmp_path.iterdir():
        for pid in serve_pids(root.resolve()):
            os.kill(pid, signal.SIGKILL)


def open_and_complete(lsp: LspSession, path: Path, limit_s: float = WAIT_S) -> dict[str, Any]:
    """Open `path` holding HANDLER and ask for ghost text at its end until some comes."""
    uri = path.as_uri()
    lsp.open(uri, HANDLER)
    deadline = time.monotonic() + limit_s
    while True:
        items = lsp.call("textDocument/inlineCompletion", inline_params(uri, 4, COLUMN))["items"]
        if items:
            return items[0]
        assert time.monotonic() < deadline, f"no completion within {limit_s} s{lsp.log()}"
        time.sleep(0.2)


def status_of(root: Path) -> Any:
    with Client(f"unix://{default_socket_path(root)}", timeout_s=10) as client:
        return client.status()


def messages(lsp: LspSession, method: str) -> list[dict[str, Any]]:
    return [n["params"] for n in lsp.notifications if n["method"] == method]


def progress_ended(notifications: list[dict[str, Any]]) -> bool:
    return any(
        n["method"] == "$/progress" and n["params"]["value"]["kind"] == "end" for n in notifications
    )


def test_a_fresh_repository_completes_with_no_manual_step(
    tmp_path: Path, start_lsp: Callable[..., LspSession], kill_daemons: None
) -> None:
    repo = make_repo(tmp_path / "fresh").resolve()
    lsp = start_lsp("--serve-args", TINY_SERVE)
    lsp.initialize(repo, PROGRESS)
    began = time.monotonic()
    item = open_and_complete(lsp, repo / "new_handlers.py")
    print(f"\nopened to first completion: {time.monotonic() - began:.1f} s")
    assert item["insertText"]
    # The editor saw the first model train (percent and time left), then one message.
    progress = [p["value"] for p in messages(lsp, "$/progress")]
    assert progress[0]["kind"] == "begin" and "first model" in progress[0]["title"]
    assert any(p["kind"] == "report" and "percentage" in p for p in progress)
    lsp.wait_for("the end of the progress", progress_ended)
    shown = [m["message"] for m in messages(lsp, "window/showMessage")]
    assert len([m for m in shown if "completions start" in m]) == 1, shown
    # Started detached by the bridge, told to stop after a quiet half hour; its log is private.
    status = status_of(repo)
    assert (status.started_by, status.idle_exit_minutes) == ("lsp", 30.0)
    assert status.stops_unix > time.time() + 29 * 60
    log = default_store_dir(repo) / LOG_FILE
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and "serving" in log.read_text()
    assert os.getsid(status.pid) == status.pid  # a session of its own: outlives the editor
    assert lsp.stop() == 0
    assert serve_pids(repo) == [status.pid]


@pytest.fixture
def two_daemons(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> Iterator[list[tuple[Path, Daemon]]]:
    """Two repositories, each with a daemon of its own on its default socket (in this process)."""
    started = []
    for name in ("first", "second"):
        repo = tmp_path / name
        shutil.copytree(fixture_repo, repo)
        repo = repo.resolve()
        store = tmp_path / f"{name}-store"
        shutil.copytree(trained_store.root, store)
        config = DaemonConfig(
            repo=repo, store=store, server=ServerConfig(grace_s=1.0), watch=WatchConfig(False)
        )
        daemon = Daemon(config)
        daemon.start(io.StringIO())
        started.append((repo, daemon))
    yield started
    for _, daemon in started:
        daemon.close()


def test_documents_of_two_repositories_each_go_to_their_own_daemon(
    two_daemons: list[tuple[Path, Daemon]], tmp_path: Path, start_lsp: Callable[..., LspSession]
) -> None:
    lsp = start_lsp("--no-start")
    lsp.initialize(tmp_path / "first")
    for repo, daemon in two_daemons:
        before = daemon.metrics.total
        assert open_and_complete(lsp, repo / "new_handlers.py")["insertText"] == "spond(value)"
        assert daemon.metrics.total > before  # asked of this repository's daemon
        assert daemon.config.server.socket_path == default_socket_path(repo)
    # Outside any repository: no daemon, said once.
    outside = tmp_path / "loose"
    outside.mkdir()
    for name in ("a.py", "b.py"):
        uri = (outside / name).as_uri()
        lsp.open(uri, "x = 1\n")
        assert lsp.call("textDocument/inlineCompletion", inline_params(uri, 0, 5))["items"] == []
    shown = [m["message"] for m in messages(lsp, "window/showMessage")]
    assert len([m for m in shown if "outside any repository" in m]) == 1, shown
    assert lsp.stop() == 0
    assert "Traceback" not in lsp.log()


def hand_started(repo: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "completiond.clients.cli", "serve", "--repo", str(repo),
             *TINY_SERVE.split()],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip


def with_model(repo: Path, trained_store: ModelStore) -> Path:
    """`repo` with the tiny model in its default store already: its daemon serves at once."""
    shutil.copytree(trained_store.root, default_store_dir(repo), dirs_exist_ok=True)
    return repo


def test_bridges_starting_at_once_leave_one_daemon_that_exits_when_idle(
    fixture_repo: Path,
    trained_store: ModelStore,
    tmp_path: Path,
    start_lsp: Callable[..., LspSession],
    kill_daemons: None,
) -> None:
    shared = with_model(make_repo(tmp_path / "shared").resolve(), trained_store)
    by_hand = with_model(make_repo(tmp_path / "by-hand").resolve(), trained_store)
    manual = hand_started(by_hand, tmp_path / "by-hand.log")
    try:
        # Two editors open the same repository at once: one daemon, both complete from it.
        bridges = [start_lsp("--serve-args", TINY_SERVE, "--idle-exit", "0.05") for _ in "ab"]
        for lsp in bridges:
            lsp.initialize(shared)
        for lsp in bridges:
            lsp.open((shared / "new_handlers.py").as_uri(), HANDLER)
        for lsp in bridges:
            assert open_and_complete(lsp, shared / "new_handlers.py")["insertText"]
        pids = serve_pids(shared)
        assert len(pids) == 1, pids
        assert status_of(shared).idle_exit_minutes == pytest.approx(0.05)
        for lsp in bridges:
            assert lsp.stop() == 0
        # No client for 3 s: the bridge's daemon stops; the one started by hand keeps running.
        wait_until(lambda: not serve_pids(shared), "the idle daemon exits", limit_s=30)
        assert not default_socket_path(shared).exists()
        assert manual.poll() is None
        hand = status_of(by_hand)
        assert (hand.started_by, hand.idle_exit_minutes, hand.stops_unix) == ("", 0.0, 0.0)
    finally:
        manual.send_signal(signal.SIGTERM)
        manual.wait(timeout=WAIT_S)


def test_a_repository_over_the_size_limit_gets_no_daemon_and_one_message(
    tmp_path: Path, start_lsp: Callable[..., LspSession], kill_daemons: None
) -> None:
    repo = make_repo(tmp_path / "large").resolve()  # 7 files besides the ignored one
    lsp = start_lsp("--max-files", "5")
    lsp.initialize(repo)
    for name in ("a.py", "b.py"):
        uri = (repo / name).as_uri()
        lsp.open(uri, "x = 1\n")
        assert lsp.call("textDocument/inlineCompletion", inline_params(uri, 0, 5))["items"] == []
    lsp.wait_for("the message", lambda sent: any("too large" in str(n) for n in sent))
    shown = [m["message"] for m in messages(lsp, "window/showMessage")]
    assert len(shown) == 1 and "too large: 7 files" in shown[0], shown
    assert serve_pids(repo) == [] and not default_socket_path(repo).exists()
    assert lsp.stop() == 0
