"""The gRPC server factory: servicers, error boundary, health, reflection, listening address.

Kept apart from the daemon's entry point so tests build a real server on a temporary socket or
port 0 and talk to it over a real channel.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from completiond.core.errors import AlreadyRunning, InvalidRequest
from completiond.core.locations import claim_socket_dir
from completiond.v1 import completion_pb2 as pb
from completiond.v1 import completion_pb2_grpc as pb_grpc

from .access import COMPLETION_SERVICE, Scope, TokenCheck
from .boundary import ErrorBoundary
from .metrics import RequestMetrics
from .service import CompletionServicer, ModelServicer

MODEL_SERVICE = pb.DESCRIPTOR.services_by_name["ModelService"].full_name


@dataclass
class ServerConfig:
    socket_path: Path | None = None  # Unix socket (the default transport), mode 0600
    listen: str | None = None  # "host:port" on loopback instead; port 0 picks a free port
    allow_remote: bool = False  # let `listen` be a non-loopback address
    token: str | None = None  # when set, every call must carry it (see access.py); TCP needs one
    completion_token: str | None = None  # a second token that may only ask for completions
    tls: tuple[bytes, bytes] | None = None  # (private key, certificate chain) PEM for `listen`
    insecure_remote: bool = False  # serve a non-loopback address without TLS all the same
    metrics_port: int | None = None  # Prometheus endpoint on 127.0.0.1 (0 picks a port)
    max_workers: int = 8  # concurrent requests; a completion holds a worker for milliseconds
    grace_s: float = 5.0  # in-flight requests get this long to finish on shutdown


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP address or "localhost") is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError as exc:
        raise InvalidRequest(f"--listen: {host!r} is not an IP address") from exc


def parse_listen(listen: str, allow_remote: bool = False) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) on a loopback address; another address only when
    `allow_remote`."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidRequest(f"--listen wants host:port, got {listen!r}")
    if not is_loopback(host) and not allow_remote:
        raise InvalidRequest(
            f"--listen {listen}: only loopback addresses are served (the daemon answers "
            "about your code); --allow-remote (with --token-file and TLS) exposes it on purpose"
        )
    return host, int(port)


def check_access(config: ServerConfig) -> None:
    """Refuse a configuration that would let others in: TCP without a token (every user of the
    machine can reach even loopback), or a non-loopback address in plain text."""
    if config.completion_token and not config.token:
        raise InvalidRequest("--completion-token-file needs --token-file (the full token) too")
    if config.completion_token and config.completion_token == config.token:
        raise InvalidRequest("the completion token must differ from the full token")
    if not config.listen:
        if config.tls:
            raise InvalidRequest("--tls-cert/--tls-key serve TCP: they need --listen")
        return
    if not config.token:
        raise InvalidRequest(
            f"--listen {config.listen} needs a token (--token-file F): every user of this "
            "machine can reach a TCP port, loopback included. serve writes a fresh token to F "
            "(mode 600) when F does not exist; clients pass the same --token-file F"
        )
    host, _ = parse_listen(config.listen, config.allow_remote)
    if not is_loopback(host) and not config.tls and not config.insecure_remote:
        raise InvalidRequest(
            f"--listen {config.listen} would send the token and your code in plain text: give "
            "--tls-cert and --tls-key, or --insecure-remote when something else encrypts the "
            "link (an SSH tunnel, a VPN)"
        )


def _token_check(config: ServerConfig) -> list[grpc.ServerInterceptor]:
    tokens = {config.token: Scope.FULL} if config.token else {}
    if config.completion_token:
        tokens[config.completion_token] = Scope.COMPLETION
    return [TokenCheck(tokens)] if tokens else []


def _claim_socket(path: Path) -> None:
    """Make `path` free to bind: refuse if a live daemon answers there, remove a stale file."""
    claim_socket_dir(path.parent)
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # left behind by a daemon that died
    else:
        raise AlreadyRunning(f"a daemon is already serving this repository on {path}")
    finally:
        probe.close()


class Server:
    """A started gRPC server with its health servicer and the address clients use."""

    def __init__(
        self,
        config: ServerConfig,
        completion: CompletionServicer,
        model: ModelServicer,
        metrics: RequestMetrics,
    ) -> None:
        self.config = config
        check_access(config)
        self.health = health.HealthServicer()
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
            interceptors=[*_token_check(config), ErrorBoundary(metrics.count)],
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_CompletionServiceServicer_to_server(completion, self.grpc)
        pb_grpc.add_ModelServiceServicer_to_server(model, self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (COMPLETION_SERVICE, MODEL_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.grpc,
        )
        self.address = self._bind()
        model.listen_address = self.address

    def _bind(self) -> str:
        if self.config.listen:
            host, port = parse_listen(self.config.listen, self.config.allow_remote)
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                bound = (
                    self.grpc.add_secure_port(
                        target, grpc.ssl_server_credentials([self.config.tls])
                    )
                    if self.config.tls
                    else self.grpc.add_insecure_port(target)
                )
            except RuntimeError as exc:
                raise AlreadyRunning(f"cannot listen on {target}: address in use?") from exc
            return target.rsplit(":", 1)[0] + f":{bound}"
        assert self.config.socket_path is not None
        path = self.config.socket_path
        _claim_socket(path)
        old_umask = os.umask(0o177)  # the socket file is created 0600: this user only
        try:
            self.grpc.add_insecure_port(f"unix://{path}")
        finally:
            os.umask(old_umask)
        return f"unix://{path}"

    def start(self) -> None:
        self.grpc.start()
        if self.config.socket_path is not None and not self.config.listen:
            os.chmod(self.config.socket_path, 0o600)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", COMPLETION_SERVICE):
            self.health.set(name, status)

    def stop(self) -> None:
        """Refuse new requests, let in-flight ones finish (up to grace_s), remove the socket."""
        self.health.enter_graceful_shutdown()
        self.grpc.stop(self.config.grace_s).wait()
        if self.config.socket_path is not None and not self.config.listen:
            self.config.socket_path.unlink(missing_ok=True)
