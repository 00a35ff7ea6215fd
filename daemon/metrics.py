"""Request counts and latencies: for `completiond status` and an optional Prometheus endpoint.

The endpoint (`serve --metrics-port N`) listens on loopback only and exposes request counts by
method and status code, a latency histogram, the served model's version and the training state.
No request content is ever recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)


class _StateCollector(Collector):
    """Model version and training state, read at scrape time (nothing to keep in sync)."""

    def __init__(self, model_version: Callable[[], str], training: Callable[[], bool]) -> None:
        self.model_version = model_version
        self.training = training

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "completiond_model_info", "The served model (1 while served)", labels=["version"]
        )
        version = self.model_version()
        if version:
            info.add_metric([version], 1.0)
        yield info
        yield GaugeMetricFamily(
            "completiond_training", "1 while a training run is in progress", value=self.training()
        )


class RequestMetrics:
    def __init__(self, on_request: Callable[[str], None] = lambda _: None) -> None:
        # Told the method of every request: the idle exit counts them all, the idle base
        # build only completion requests.
        self.on_request = on_request
        self.total = 0
        self.failed = 0
        self.port: int | None = None  # of the Prometheus endpoint, once serving
        self._http: WSGIServer | None = None
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "completiond_requests",
            "RPCs answered, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "completiond_request_seconds",
            "Time to answer an RPC (streams: until their end)",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def count(self, method: str, code: str, seconds: float) -> None:
        """Called by the error boundary once per RPC of completiond's own services."""
        with self._lock:
            self.total += 1
            self.failed += code != "OK"
        self.on_request(method)
        self._requests.labels(method, code).inc()
        self._latency.labels(method).observe(seconds)

    def watch_state(self, model_version: Callable[[], str], training: Callable[[], bool]) -> None:
        self.registry.register(_StateCollector(model_version, training))

    def serve(self, port: int) -> int:
        """Expose the metrics over HTTP on 127.0.0.1:`port` (0 picks one); returns the port."""
        self._http, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._http.server_port)
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
