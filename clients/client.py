"""The Python client library: find the repository's daemon and call it.

Editor plugins, the LSP bridge and the CLI all go through this one class.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from completiond.core.errors import DaemonUnreachable
from completiond.core.locations import check_socket, default_socket_path, repo_root
from completiond.daemon.access import read_pem, read_token
from completiond.v1 import completion_pb2 as pb
from completiond.v1 import completion_pb2_grpc as pb_grpc


def daemon_address(
    repo: Path | None = None, socket: Path | None = None, listen: str | None = None
) -> str:
    """The gRPC target: an explicit --listen or --socket, else the socket of the repository
    containing `repo` (default: the current directory)."""
    if listen:
        return listen
    path = socket or default_socket_path(repo_root(repo or Path.cwd()))
    return f"unix://{path}"


def add_repo_option(
    parser: argparse.ArgumentParser,
    help: str = "the repository (any directory inside it; default: the current directory)",
) -> None:
    parser.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help=help)


def add_connection_options(parser: argparse.ArgumentParser, repo_help: str | None = None) -> None:
    """The options every client (the commands, the LSP bridge) reaches a daemon with."""
    if repo_help is None:
        add_repo_option(parser)
    else:
        add_repo_option(parser, repo_help)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--socket", type=Path, help="Unix socket of the daemon (default: derived from the repo)"
    )
    group.add_argument(
        "--listen", metavar="HOST:PORT", help="the daemon's TCP address instead of its socket"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="file holding the daemon's token (its full or completion-only one); needed with "
        "--listen",
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="connect with TLS, trusting this CA certificate (or the daemon's own self-signed "
        "one); for a daemon started with --tls-cert",
    )


@dataclass(frozen=True)
class Connection:
    """Where a daemon listens and what a call needs to get in."""

    address: str
    token: str | None = field(default=None, repr=False)  # kept out of logs and tracebacks
    root_certificates: bytes | None = None  # PEM; set: TLS, trusting these

    def client(self, timeout_s: float = 10.0) -> Client:
        return Client(self.address, timeout_s, self.token, self.root_certificates)


def connection(args: argparse.Namespace) -> Connection:
    """The connection that `add_connection_options`' arguments describe."""
    return Connection(
        daemon_address(args.repo, args.socket, args.listen),
        read_token(args.token_file) if args.token_file else None,
        read_pem(args.tls_ca) if args.tls_ca else None,
    )


class Client:
    """A channel to one daemon. `timeout_s` bounds every call; `token` is sent with every call
    when the daemon requires one (a TCP daemon); `root_certificates` (PEM) makes the channel TLS,
    trusting them."""

    def __init__(
        self,
        address: str,
        timeout_s: float = 10.0,
        token: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        if address.startswith("unix://"):
            socket = Path(address[len("unix://") :])
            if not socket.exists():
                raise DaemonUnreachable(
                    f"no daemon is running for this repository (no socket at {socket}); "
                    "start one with `completiond serve`"
                )
            check_socket(socket)
        self.address = address
        self.timeout_s = timeout_s
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.channel = (
            grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates))
            if root_certificates is not None
            else grpc.insecure_channel(address)
        )
        self.completion = pb_grpc.CompletionServiceStub(self.channel)
        self.model = pb_grpc.ModelServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def complete(
        self,
        prefix: str,
        suffix: str = "",
        path: str = "",
        n: int = 1,
        max_chars: int = 0,
        temperature: float = 0.0,
        min_confidence: float = 0.0,
        document_id: str = "",
    ) -> pb.CompleteResponse:
        request = pb.CompleteRequest(
            prefix=prefix,
            suffix=suffix,
            path=path,
            document_id=document_id,
            n=n,
            max_chars=max_chars,
            temperature=temperature,
            min_confidence=min_confidence,
        )
        return self.completion.Complete(request, timeout=self.timeout_s, metadata=self.metadata)

    def warm(self, text: str, document_id: str = "", path: str = "") -> pb.WarmResponse:
        """Have the daemon read a document now (e.g. when it is opened in an editor)."""
        request = pb.WarmRequest(document_id=document_id, path=path, text=text)
        return self.completion.Warm(request, timeout=self.timeout_s, metadata=self.metadata)

    def feedback(self, client: str, event: str, count: int = 1) -> None:
        """Report what became of suggestions: event is "shown", "accepted",
        "partially_accepted" or "dismissed"."""
        request = pb.FeedbackRequest(
            client=client, event=pb.FeedbackRequest.Event.Value(event.upper()), count=count
        )
        self.completion.Feedback(request, timeout=self.timeout_s, metadata=self.metadata)

    def status(self) -> pb.StatusResponse:
        return self.model.Status(pb.StatusRequest(), timeout=self.timeout_s, metadata=self.metadata)

    def retrain(self, minutes: float = 0.0, full: bool = False) -> Iterator[pb.TrainingProgress]:
        """Progress of a new training run; the stream ends with "done", "rejected" or "failed"."""
        request = pb.RetrainRequest(minutes=minutes, full=full)
        return self.model.Retrain(request, metadata=self.metadata)

    def rollback(self, version: str = "") -> pb.ModelInfo:
        request = pb.RollbackRequest(version=version)
        return self.model.Rollback(request, timeout=self.timeout_s, metadata=self.metadata)
