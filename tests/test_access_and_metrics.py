"""Who may call the daemon, and what it reports about itself."""

from __future__ import annotations

import io
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.errors import InvalidRequest
from completiond.daemon.access import create_token, read_pem, read_tls_key_pair, read_token
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig, check_access, parse_listen
from completiond.daemon.watcher import WatchConfig

from .conftest import TlsFiles

TOKEN = "s3cret-token-0123456789abcdef"
COMPLETION_TOKEN = "completion-only-0123456789abcdef"


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


@pytest.fixture
def shared_daemon(
    fixture_repo: Path, trained_store: ModelStore, tls_files: TlsFiles, tmp_path: Path
) -> Iterator[Daemon]:
    """A daemon as a shared setup runs it: TLS, a full token and a completion-only one."""
    store = tmp_path / "store"  # a copy: Rollback below must not touch other tests' store
    shutil.copytree(trained_store.root, store)
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=store,
            server=ServerConfig(
                listen="127.0.0.1:0",
                token=TOKEN,
                completion_token=COMPLETION_TOKEN,
                tls=read_tls_key_pair(tls_files.cert, tls_files.key),
            ),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    yield daemon
    daemon.close()


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    """The status a call ends with (a stream is read to its end)."""
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def _calls(client: Client) -> dict[str, Callable[[], object]]:
    """One call of every method; Retrain's minutes are out of range, so a call that gets past
    access control ends at the service (INVALID_ARGUMENT) without starting a training run."""
    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    return {
        "Complete": lambda: client.complete("    return re"),
        "Warm": lambda: client.warm("import os\n", document_id="a"),
        "Feedback": lambda: client.feedback("test", "shown"),
        "Health": lambda: health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(), metadata=client.metadata
        ),
        "Status": client.status,
        "Retrain": lambda: client.retrain(minutes=-1),
        "Rollback": lambda: client.rollback(client.status().model.version),
        "Reflection": lambda: reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=client.metadata,
        ),
    }


def test_a_completion_token_may_only_complete(shared_daemon: Daemon, tls_files: TlsFiles) -> None:
    ca = tls_files.ca.read_bytes()
    address = shared_daemon.server.address
    OK, DENIED = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED
    with Client(address, token=COMPLETION_TOKEN, root_certificates=ca) as client:
        codes = {name: _code(call) for name, call in _calls(client).items()}
    assert codes == {
        "Complete": OK, "Warm": OK, "Feedback": OK, "Health": OK,
        "Status": DENIED, "Retrain": DENIED, "Rollback": DENIED, "Reflection": DENIED,
    }  # fmt: skip
    with Client(address, token=TOKEN, root_certificates=ca) as client:
        codes = {name: _code(call) for name, call in _calls(client).items()}
    assert codes == {name: OK for name in codes} | {"Retrain": grpc.StatusCode.INVALID_ARGUMENT}
    with Client(address, token=None, root_certificates=ca) as client:
        codes = {name: _code(call) for name, call in _calls(client).items()}
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}


def test_tls_lets_in_only_clients_that_trust_the_daemon(
    shared_daemon: Daemon, tls_files: TlsFiles
) -> None:
    address = shared_daemon.server.address
    with Client(address, token=TOKEN, root_certificates=tls_files.ca.read_bytes()) as client:
        assert client.complete("    if value is N").candidates
    with Client(address, timeout_s=2, token=TOKEN) as plain:
        assert _code(lambda: plain.complete("    if value is N")) == grpc.StatusCode.UNAVAILABLE
    other_ca = tls_files.other_ca.read_bytes()
    with Client(address, timeout_s=2, token=TOKEN, root_certificates=other_ca) as untrusting:
        assert _code(lambda: untrusting.status()) == grpc.StatusCode.UNAVAILABLE


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


def test_tcp_needs_a_token_even_on_loopback(fixture_repo: Path) -> None:
    with pytest.raises(InvalidRequest, match="needs a token"):
        Daemon(
            DaemonConfig(
                repo=fixture_repo,
                server=ServerConfig(listen="127.0.0.1:0"),
                watch=WatchConfig(enabled=False),
            )
        )
    check_access(ServerConfig(socket_path=Path("d.sock")))  # the socket: the OS decides


def test_remote_listening_needs_an_explicit_flag_and_tls(tls_files: TlsFiles) -> None:
    with pytest.raises(InvalidRequest, match="only loopback"):
        parse_listen("10.1.2.3:7000")
    assert parse_listen("10.1.2.3:7000", allow_remote=True) == ("10.1.2.3", 7000)
    remote = ServerConfig(listen="10.1.2.3:7000", allow_remote=True, token=TOKEN)
    with pytest.raises(InvalidRequest, match="plain text"):
        check_access(remote)
    check_access(replace(remote, insecure_remote=True))
    check_access(replace(remote, tls=read_tls_key_pair(tls_files.cert, tls_files.key)))
    check_access(ServerConfig(listen="127.0.0.1:0", token=TOKEN))  # loopback: plain text is fine


def test_inconsistent_access_options_are_refused(tls_files: TlsFiles) -> None:
    tls = read_tls_key_pair(tls_files.cert, tls_files.key)
    cases = {
        "they need --listen": ServerConfig(socket_path=Path("d.sock"), token=TOKEN, tls=tls),
        "needs --token-file": ServerConfig(listen="127.0.0.1:0", completion_token=TOKEN),
        "must differ": ServerConfig(listen="127.0.0.1:0", token=TOKEN, completion_token=TOKEN),
    }
    for message, config in cases.items():
        with pytest.raises(InvalidRequest, match=message):
            check_access(config)


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


def test_a_fresh_token_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config" / "token"
    token = create_token(path)
    assert read_token(path) == token and len(token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(InvalidRequest, match="cannot create"):
        create_token(path)
    assert read_token(path) == token


def test_tls_files_are_checked_when_read(tls_files: TlsFiles, tmp_path: Path) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(tls_files.key.read_bytes())
    os.chmod(key, 0o644)
    with pytest.raises(InvalidRequest, match="readable by others"):
        read_tls_key_pair(tls_files.cert, key)
    with pytest.raises(InvalidRequest, match="not PEM"):
        read_pem(Path(__file__))


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
