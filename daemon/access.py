"""Access control for a daemon reachable from other machines.

By default the daemon listens on a 0600 Unix socket or on loopback, and the operating system
decides who may connect. Listening on any other address requires a token: every call must then
carry `authorization: Bearer <token>` metadata, compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from completiond.core.errors import InvalidRequest

MIN_TOKEN_CHARS = 16


def read_token(path: Path) -> str:
    """The token in `path` (first line); refused if short or readable by other users."""
    try:
        token = path.read_text().strip().splitlines()[0] if path.stat().st_size else ""
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidRequest(f"cannot read the token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise InvalidRequest(f"token file {path} is readable by others: chmod 600 it")
    if len(token) < MIN_TOKEN_CHARS:
        raise InvalidRequest(f"the token in {path} is shorter than {MIN_TOKEN_CHARS} characters")
    return token


def _refuse(_request: Any, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid token is required")


class TokenCheck(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._refusal = grpc.unary_unary_rpc_method_handler(_refuse)

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        metadata = details.invocation_metadata or ()
        given = next((value for key, value in metadata if key == "authorization"), "")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self._expected):
            return continuation(details)
        return self._refusal
