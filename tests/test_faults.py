"""Faults and hostile input: the serving model and the store survive, the user gets a message."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.daemon.daemon import Daemon
from completiond.v1 import completion_pb2 as pb

from .conftest import TINY_MODEL, TINY_TRAIN
from .test_daemon import NEW_HANDLER

CLI = [sys.executable, "-m", "completiond.clients.cli"]


def test_the_store_deleted_while_serving(running_daemon: Daemon) -> None:
    store = running_daemon.slot.store.root
    before = running_daemon.slot.get().version
    shutil.rmtree(store)
    with Client(running_daemon.server.address, timeout_s=120) as client:
        assert client.complete(NEW_HANDLER).model_version == before  # the model is in memory
        assert client.status().versions == []
        final = list(client.retrain(minutes=0.05))[-1]  # a retrain recreates the store
        assert final.phase == "done", final.message
        assert client.complete(NEW_HANDLER).model_version == final.model_version
    assert ModelStore(store).current_version() == final.model_version


def test_a_full_disk_while_exporting_leaves_the_store_intact(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    shutil.copytree(trained_store.root, tmp_path / "s")
    store = ModelStore(tmp_path / "s")
    current = store.current_version()
    config = json.dumps({"model": TINY_MODEL, "train": {**TINY_TRAIN, "max_steps": 20}})
    result = subprocess.run(
        ["prlimit", "--fsize=8192", sys.executable, "-m", "completiond.training",
         "--repo", str(fixture_repo), "--store", str(store.root), "--config", config],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["phase"] == "failed" and "File too large" in last["message"]
    assert store.current_version() == current
    store.current()  # still verifies
    assert not list(store.bundles_dir.glob(".tmp-*"))  # nothing half-written left behind


def _serve(repo: Path, store: Path, socket: Path, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*CLI, "serve", "--repo", str(repo), "--store", str(store), "--socket", str(socket),
             "--no-watch"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip


def _wait_answer(socket: Path, limit_s: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            with Client(f"unix://{socket}", timeout_s=5) as client:
                client.complete("x = ")
            return time.monotonic() - start
        except Exception:
            time.sleep(0.05)
    pytest.fail("the daemon did not answer")


def test_killed_daemon_restarts_on_the_last_good_model(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    socket = tmp_path / "k.sock"
    daemon = _serve(fixture_repo, trained_store.root, socket, tmp_path / "1.log")
    try:
        _wait_answer(socket)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
    finally:
        daemon.kill()
    assert socket.exists()  # left behind by the killed daemon
    again = _serve(fixture_repo, trained_store.root, socket, tmp_path / "2.log")
    try:
        assert _wait_answer(socket) < 10
        with Client(f"unix://{socket}") as client:
            assert client.status().model.version == trained_store.current_version()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


def test_sigterm_lets_requests_in_flight_finish(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    socket = tmp_path / "t.sock"
    daemon = _serve(fixture_repo, trained_store.root, socket, tmp_path / "t.log")
    _wait_answer(socket)
    clients = 16  # decoded one at a time: the last finishes long after the signal
    outcomes: list[str] = []
    sent = threading.Barrier(clients + 1)

    def fire() -> None:
        with Client(f"unix://{socket}", timeout_s=60) as client:
            future = client.completion.Complete.future(
                pb.CompleteRequest(prefix=NEW_HANDLER, n=16, max_chars=400, temperature=5.0)
            )
            sent.wait()
            try:
                future.result()
                outcomes.append("ok")
            except grpc.RpcError as exc:
                outcomes.append(f"{exc.code().name}: {exc.details()}")

    threads = [threading.Thread(target=fire) for _ in range(clients)]
    for t in threads:
        t.start()
    sent.wait()
    time.sleep(0.2)  # every request has reached the daemon
    daemon.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert daemon.wait(timeout=30) == 0
    assert outcomes == ["ok"] * clients
    assert not socket.exists()


def test_a_second_daemon_for_the_same_repository_says_so(
    running_daemon: Daemon, fixture_repo: Path, tmp_path: Path
) -> None:
    socket = running_daemon.server.config.socket_path
    assert socket is not None
    result = subprocess.run(
        [*CLI, "serve", "--repo", str(fixture_repo), "--socket", str(socket), "--no-watch"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "already serving" in result.stderr and "Traceback" not in result.stderr
    with Client(running_daemon.server.address) as client:
        assert client.complete(NEW_HANDLER).candidates  # the first one keeps its socket


def _raw_complete(address: str, payload: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/completiond.v1.CompletionService/Complete",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(payload, timeout=10)
    return err.value


def test_invalid_utf8_from_another_client_is_invalid_argument(running_daemon: Daemon) -> None:
    surrogate = b"x = " + b"\xed\xa0\x80"  # an unpaired surrogate, as some clients send
    payload = b"\x0a" + bytes([len(surrogate)]) + surrogate  # field 1 (prefix), length-delimited
    error = _raw_complete(running_daemon.server.address, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in error.details()
    error = _raw_complete(running_daemon.server.address, b"\xff\xff\xff")  # not protobuf at all
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    with Client(running_daemon.server.address) as client:
        assert client.complete(NEW_HANDLER).candidates


@pytest.mark.parametrize(
    "prefix", ["\x00" * 50, "a\x00b = ", "日本語のコメント\n    x = ", "\U0001f600" * 30]
)
def test_unknown_and_control_characters_are_served(running_daemon: Daemon, prefix: str) -> None:
    with Client(running_daemon.server.address) as client:
        reply = client.complete(prefix, n=3)
    assert all("\n" not in c.text and "\x00" not in c.text for c in reply.candidates)


def test_a_path_outside_the_repository_is_only_a_hint(
    running_daemon: Daemon, tmp_path: Path
) -> None:
    secret = tmp_path / "private.txt"
    secret.write_text("TOPSECRET-CONTENT\n")
    with Client(running_daemon.server.address) as client:
        reply = client.complete("    return re", path=str(secret), n=4)
        same = client.complete("    return re", n=4)
    assert [c.text for c in reply.candidates] == [c.text for c in same.candidates]
    assert all("TOPSECRET" not in c.text for c in reply.candidates)
