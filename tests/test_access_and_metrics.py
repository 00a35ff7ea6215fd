"""Who may call the daemon, and what it reports about itself."""

from __future__ import annotations

import io
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.errors import InvalidRequest
from completiond.daemon.access import read_token
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig, parse_listen
from completiond.daemon.watcher import WatchConfig

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture
def tcp_daemon(fixture_repo: Path, trained_store: ModelStore) -> Iterator[Daemon]:
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=trained_store.root,
            server=ServerConfig(listen="127.0.0.1:0", token=TOKEN, metrics_port=0),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    yield daemon
    daemon.close()


def test_calls_without_the_right_token_are_refused(tcp_daemon: Daemon) -> None:
    for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1]):
        with Client(tcp_daemon.server.address, token=token) as client:
            with pytest.raises(grpc.RpcError) as err:
                client.complete("    return re")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(tcp_daemon.server.address, token=TOKEN) as client:
        assert client.complete("    if value is N").candidates
        assert client.status().model.version


def test_remote_listening_needs_a_token_and_an_explicit_flag(fixture_repo: Path) -> None:
    with pytest.raises(InvalidRequest, match="only loopback"):
        parse_listen("10.1.2.3:7000")
    assert parse_listen("10.1.2.3:7000", allow_remote=True) == ("10.1.2.3", 7000)
    with pytest.raises(InvalidRequest, match="needs a token"):
        Daemon(
            DaemonConfig(
                repo=fixture_repo,
                server=ServerConfig(listen="127.0.0.1:0", allow_remote=True),
                watch=WatchConfig(enabled=False),
            )
        )


def test_token_files_must_be_private_and_long(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(InvalidRequest, match="readable by others"):
        read_token(path)
    os.chmod(path, 0o600)
    assert read_token(path) == TOKEN
    path.write_text("short\n")
    with pytest.raises(InvalidRequest, match="shorter than 16"):
        read_token(path)
    with pytest.raises(InvalidRequest, match="cannot read"):
        read_token(tmp_path / "missing")


def test_prometheus_metrics_on_loopback(tcp_daemon: Daemon) -> None:
    with Client(tcp_daemon.server.address, token=TOKEN) as client:
        client.complete("    return re")
        with pytest.raises(grpc.RpcError):
            client.complete("x", n=99)
    url = f"http://127.0.0.1:{tcp_daemon.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read().decode()
    assert 'completiond_requests_total{code="OK",method="Complete"} 1.0' in body
    assert 'completiond_requests_total{code="INVALID_ARGUMENT",method="Complete"} 1.0' in body
    assert 'completiond_request_seconds_bucket{le="0.1",method="Complete"}' in body
    version = tcp_daemon.slot.get().version
    assert f'completiond_model_info{{version="{version}"}} 1.0' in body
    assert "completiond_training 0.0" in body
    assert "return" not in body  # no request content is recorded
