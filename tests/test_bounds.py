"""Bounds a client cannot push the daemon past: key lengths, long reads it gave up on, and the
characters a suggestion may contain. A real daemon on a real socket, through the client."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from completiond.clients.client import Client
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.state_cache import ContextConfig
from completiond.daemon.watcher import WatchConfig
from completiond.training.bundle import ModelStore
from completiond.v1 import completion_pb2 as pb


def client_for(daemon: Daemon) -> Client:
    return Client(daemon.server.address, timeout_s=30)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"document_id": "d" * 4_097}, "document_id has 4,097 characters; at most 4,096"),
        ({"path": "p" * 5_000}, "path has 5,000 characters; at most 4,096"),
    ],
)
def test_long_document_keys_are_refused(
    running_daemon: Daemon, fields: dict[str, str], message: str
) -> None:
    with client_for(running_daemon) as client:
        for call in (client.complete, client.warm):
            with pytest.raises(grpc.RpcError) as err:
                call("x = 1", **fields)  # type: ignore[operator]
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in err.value.details()
        client.complete("x = 1", document_id="d" * 4_096, path="p" * 4_096)  # at the limit
    assert len(running_daemon.slot.get().decoder.states) == 1


@pytest.fixture
def deep_warming_daemon(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> Iterator[Daemon]:
    """A daemon whose Warm reads up to a million characters: a read long enough to give up on."""
    store = tmp_path / "store"
    shutil.copytree(trained_store.root, store)
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=store,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            context=ContextConfig(warm_chars=1_000_000),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    yield daemon
    daemon.close()


def test_a_warm_the_client_gave_up_on_stops_reading(deep_warming_daemon: Daemon) -> None:
    text = "".join(f"def g{i}(y):\n    return y + {i}\n" for i in range(40_000))[:1_000_000]
    with client_for(deep_warming_daemon) as client, pytest.raises(grpc.RpcError) as err:
        client.completion.Warm(pb.WarmRequest(document_id="big.py", text=text), timeout=0.2)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 60
    while deep_warming_daemon.metrics.total < 1:  # counted when the handler has returned
        assert time.monotonic() < deadline, "the Warm handler did not return"
        time.sleep(0.01)
    assert len(deep_warming_daemon.slot.get().decoder.states) == 0  # stopped, nothing kept
