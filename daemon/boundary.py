"""The one place where exceptions become gRPC status codes.

Handlers raise `CompletiondError` subclasses (each names its status code) and contain no
try/except of their own; anything else is a bug: logged with its traceback, answered INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from completiond.errors import CompletiondError

log = logging.getLogger(__name__)


def _abort(exc: Exception, context: grpc.ServicerContext, method: str) -> None:
    if isinstance(exc, CompletiondError):
        context.abort(getattr(grpc.StatusCode, exc.grpc_code_name), str(exc))
    log.exception("internal error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


class ErrorBoundary(grpc.ServerInterceptor):
    """Wraps every unary and server-streaming handler of the server."""

    def __init__(self, on_request: Callable[[bool], None] = lambda ok: None) -> None:
        self.on_request = on_request  # counts requests and failures for `status`

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or not method.startswith("/completiond."):
            return handler  # health and reflection are grpc's own
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    response = inner(request, context)
                except Exception as exc:
                    self.on_request(False)
                    _abort(exc, context, method)
                self.on_request(True)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner_stream(request, context)
                except Exception as exc:
                    self.on_request(False)
                    _abort(exc, context, method)
                self.on_request(True)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler
