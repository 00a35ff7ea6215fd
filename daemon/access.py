"""Access control: who may call the daemon, and what.

On its Unix socket (mode 0600, in a 0700 directory) the operating system decides. TCP, loopback
included, is open to every user of the machine, so a TCP daemon requires a token: every call
carries `authorization: Bearer <token>` metadata, compared in constant time. The full token may
call everything; a completion token (for shared setups) only what an editor needs.
"""

from __future__ import annotations

import enum
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health

from completiond.core.errors import InvalidRequest
from completiond.v1 import completion_pb2 as pb

MIN_TOKEN_CHARS = 16
COMPLETION_SERVICE = pb.DESCRIPTOR.services_by_name["CompletionService"].full_name


class Scope(enum.Enum):
    FULL = "full"  # everything: completions, Status, Retrain, Rollback, reflection
    COMPLETION = "completion"  # completions (Complete, Warm, Feedback) and health only


def permits(scope: Scope, method: str) -> bool:
    """Whether a token of `scope` may call `method` ("/package.Service/Method"). A completion
    token reaches the completion service and health: not the model's control (Retrain, Rollback),
    nor Status, which tells the repository's path and training details, nor reflection."""
    service = method.strip("/").split("/")[0]
    return scope is Scope.FULL or service in (COMPLETION_SERVICE, health.SERVICE_NAME)


def _private_file(path: Path, what: str) -> str:
    """The text of `path`, refused if other users may read it."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidRequest(f"cannot read the {what} {path}: {reason}") from exc
    if mode & 0o077:
        raise InvalidRequest(f"{what} {path} is readable by others: chmod 600 it")
    return text


def read_token(path: Path) -> str:
    """The token in `path` (first line); refused if short or readable by other users."""
    lines = _private_file(path, "token file").strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidRequest(f"the token in {path} is shorter than {MIN_TOKEN_CHARS} characters")
    return token


def create_token(path: Path) -> str:
    """Write a fresh random token to `path`, which must not exist: mode 0600, and its directory
    0700 when this makes it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidRequest(f"cannot create the token file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def read_tls_key_pair(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """(private key, certificate chain) in PEM for the server; the key must be private."""
    key_pem = _private_file(key, "TLS key").encode()
    return key_pem, read_pem(cert, "TLS certificate")


def read_pem(path: Path, what: str = "TLS CA file") -> bytes:
    """A PEM file's bytes, refused early when it holds no PEM block (grpc would only fail at the
    first connection, with a vaguer message)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if b"-----BEGIN " not in data:
        raise InvalidRequest(f"the {what} {path} is not PEM")
    return data


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def refuse(_request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


class TokenCheck(grpc.ServerInterceptor):
    """Lets a call through when it carries a known token whose scope permits its method:
    no known token is UNAUTHENTICATED, a method beyond the token's scope PERMISSION_DENIED."""

    def __init__(self, tokens: Mapping[str, Scope]) -> None:
        self._tokens = [(f"Bearer {token}".encode(), scope) for token, scope in tokens.items()]
        self._unauthenticated = _refusal(
            grpc.StatusCode.UNAUTHENTICATED, "a valid token is required"
        )
        self._denied = _refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            "this token may only ask for completions (Complete, Warm, Feedback, health)",
        )

    def _scope(self, details: grpc.HandlerCallDetails) -> Scope | None:
        metadata = details.invocation_metadata or ()
        given = next((value for key, value in metadata if key == "authorization"), "")
        if not isinstance(given, str):
            return None
        # Every known token is compared: the time taken does not tell which one came closest.
        matches = [
            scope
            for expected, scope in self._tokens
            if hmac.compare_digest(given.encode(), expected)
        ]
        return matches[0] if matches else None

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        scope = self._scope(details)
        if scope is None:
            return self._unauthenticated
        if not permits(scope, details.method):
            return self._denied
        return continuation(details)
