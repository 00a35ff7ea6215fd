"""Bounds a client (or a repository file) cannot push the daemon past: key lengths, long reads
the client gave up on, the characters a suggestion may contain. A real daemon on a real socket,
through the client."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from completiond.clients.client import Client
from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import ModelStore
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.state_cache import ContextConfig
from completiond.daemon.watcher import WatchConfig
from completiond.v1 import completion_pb2 as pb

from .conftest import TINY_MODEL, TINY_TRAIN, git, make_repo


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


# Lines of a repository file with characters no suggestion may show, each after a start the
# file repeats (so retrieval copies the rest and the model learns it): ESC (a terminal escape),
# a lone CR (training reads it as a line break; it reaches retrieval through the current file),
# BEL and a C1 control, the line separator, a bidirectional override and isolate.
HOSTILE = (
    'def paint_{i}(name):\n    label = "red\x1b[0m" + name\n    bar = "50%\r100%"\n'
    '    bell = "ding\x07\x85"\n    lines = "one\u2028two"\n'
    '    user = "admin\u202e\u2066 # check\u2069"\n    return label\n\n\n'
)
UNSHOWN = "\x1b\r\x07\x85\u2028\u202e\u2066\u2069"
STARTS = [
    '    label = "re',
    '    bar = "50',
    '    bell = "di',
    '    lines = "on',
    '    user = "adm',
    'def paint_7(name):\n    label = "',
    # The current file as a client sends it: the lone CR reaches retrieval this way.
    "".join(HOSTILE.format(i=i) for i in range(3)) + 'def paint_9(name):\n    bar = "5',
]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelStore]:
    """A tiny model and index trained on a repository with such a file."""
    from completiond.training.model import ModelConfig
    from completiond.training.run import train_repository
    from completiond.training.train import TrainConfig

    repo = make_repo(tmp_path_factory.mktemp("hostile") / "project", files=2)
    (repo / "paint.py").write_text("".join(HOSTILE.format(i=i) for i in range(60)))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "paint")
    store = ModelStore(tmp_path_factory.mktemp("hostile-store"))
    train_repository(repo, store, ModelConfig(**TINY_MODEL), TrainConfig(minutes=5, **TINY_TRAIN))
    learnt = store.current().tokenizer.chars
    assert all(ch in learnt for ch in UNSHOWN.replace("\r", ""))  # the model may emit them
    return repo, store


@pytest.mark.parametrize("retrieval", [True, False], ids=["retrieval", "model-only"])
def test_suggestions_never_carry_control_characters(
    hostile_store: tuple[Path, ModelStore], tmp_path: Path, retrieval: bool
) -> None:
    repo, store = hostile_store
    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store.root,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            retrieval=RetrievalConfig(enabled=retrieval),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    try:
        texts = []
        with client_for(daemon) as client:
            for start in STARTS:
                reply = client.complete(start, n=4, max_chars=40)
                texts += [c.text for c in reply.candidates]
    finally:
        daemon.close()
    assert texts
    assert [t for t in texts if any(ch in UNSHOWN for ch in t)] == []
