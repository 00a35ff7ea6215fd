"""The one place where exceptions become gRPC status codes.

Handlers raise `CompletiondError` subclasses (each names its status code) and contain no
try/except of their own; anything else is a bug: logged with its traceback, answered INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from completiond.core.errors import CompletiondError, InvalidRequest

log = logging.getLogger(__name__)


class _Undecodable:
    """Stands in for a request whose bytes did not parse (e.g. invalid UTF-8 in a string field
    from another language's client), so the boundary can answer INVALID_ARGUMENT instead of
    grpc's generic INTERNAL."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError and friends
            return _Undecodable(exc)

    return deserialize


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidRequest(f"the request is not a valid message: {request.error}")


def _code(exc: Exception) -> str:
    return exc.grpc_code_name if isinstance(exc, CompletiondError) else "INTERNAL"


def _abort(exc: Exception, context: grpc.ServicerContext, method: str) -> None:
    if isinstance(exc, CompletiondError):
        context.abort(getattr(grpc.StatusCode, exc.grpc_code_name), str(exc))
    log.exception("internal error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


class ErrorBoundary(grpc.ServerInterceptor):
    """Wraps every unary and server-streaming handler of completiond's own services."""

    def __init__(self, on_request: Callable[[str, str, float], None]) -> None:
        self.on_request = on_request  # (method, status code name, seconds): status and metrics

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or not method.startswith("/completiond."):
            return handler  # health and reflection are grpc's own
        name = method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                try:
                    _check_decoded(request)
                    response = inner(request, context)
                except Exception as exc:
                    self.on_request(name, _code(exc), time.perf_counter() - start)
                    _abort(exc, context, method)
                self.on_request(name, "OK", time.perf_counter() - start)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                try:
                    _check_decoded(request)
                    yield from inner_stream(request, context)
                except Exception as exc:
                    self.on_request(name, _code(exc), time.perf_counter() - start)
                    _abort(exc, context, method)
                self.on_request(name, "OK", time.perf_counter() - start)

            return grpc.unary_stream_rpc_method_handler(
                stream, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        return handler
