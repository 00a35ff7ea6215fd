"""Suggestion feedback: bounded client names and rows, saved soon, privately and atomically."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import grpc
import pytest

from completiond.clients.client import Client
from completiond.daemon.daemon import Daemon
from completiond.daemon.feedback import MAX_CLIENTS, OTHER, FeedbackCounts


def shown_by_client(client: Client) -> dict[str, int]:
    return {f.client: f.shown for f in client.status().feedback}


def test_junk_client_names_cannot_lock_out_the_next_client(running_daemon: Daemon) -> None:
    with Client(running_daemon.server.address, timeout_s=30) as client:
        client.feedback("vscode", "shown", 10)
        for i in range(3 * MAX_CLIENTS):
            client.feedback(f"junk{i}", "shown")
        client.feedback("nvim", "shown", 2)  # a client arriving after the flood is counted
        counts = shown_by_client(client)
    assert len(counts) <= MAX_CLIENTS
    assert counts["vscode"] == 10 and counts["nvim"] == 2 and counts[OTHER] > 0
    assert sum(counts.values()) == 10 + 3 * MAX_CLIENTS + 2  # folded, not lost


@pytest.mark.parametrize("name", ["a" * 33, "", "\x1b[2J", "vim\u202e", "caf\u00e9", "two words"])
def test_client_names_are_short_and_plain(running_daemon: Daemon, name: str) -> None:
    with Client(running_daemon.server.address, timeout_s=30) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.feedback(name, "shown")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "A-Z a-z 0-9 . _ + -" in err.value.details()
        client.feedback("coc.nvim", "shown")
        assert shown_by_client(client) == {"coc.nvim": 1}


def wait_for(path: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.02)


def test_counts_are_saved_soon_privately_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "store" / "feedback.json"
    counts = FeedbackCounts(path, save_after_s=0.05)
    counts.add("zsh", "accepted", 3)
    wait_for(path)  # without a stop: a crash after this keeps the counts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FeedbackCounts(path).snapshot()["zsh"]["accepted"] == 3
    first = path.stat().st_ino
    counts.add("zsh", "dismissed")
    counts.save()
    assert path.stat().st_ino != first  # replaced by a rename, never rewritten in place
    assert [p.name for p in path.parent.iterdir()] == ["feedback.json"]
    assert FeedbackCounts(path).snapshot()["zsh"]["dismissed"] == 1
