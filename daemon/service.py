"""gRPC servicers: request validation, completion, status and retraining.

No try/except here: errors are raised as `CompletiondError`s and turned into status codes by
`boundary.ErrorBoundary`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import grpc

from completiond.completion.retrieval import DEFAULT_WEIGHTS
from completiond.core.errors import DeadlineExceeded, InvalidRequest
from completiond.core.limits import MAX_COMPLETION_CHARS
from completiond.core.progress import Progress
from completiond.core.version import __version__
from completiond.v1 import completion_pb2 as pb
from completiond.v1 import completion_pb2_grpc as pb_grpc

from .decoder import Decoder, Query
from .feedback import FeedbackCounts
from .idle import IdleClock
from .idle_base import BaseBuilder
from .live_index import LiveIndex
from .metrics import RequestMetrics
from .model_slot import ModelSlot, ServedModel
from .trainer import TrainingRunner
from .watcher import RepoWatcher


@dataclass
class RequestLimits:
    max_candidates: int = 16
    max_chars: int = MAX_COMPLETION_CHARS
    max_temperature: float = 5.0
    max_prefix_chars: int = 1_000_000  # larger prefixes are refused; the model reads a tail
    max_suffix_chars: int = 1_000_000
    # document_id and path: an editor's URI or a file path (PATH_MAX is 4096 on Linux). Both key
    # the daemon's per-document memory, so a client cannot make one key cost much.
    max_key_chars: int = 4_096
    # Decodes running at once. Decoding is Python between engine calls, so concurrent decodes
    # only convoy on the GIL: one at a time serves more per second (bench/latency.py's
    # throughput with 4 and 16 clients shows it). RPC threads stay free for I/O.
    concurrent_decodes: int = 1


@dataclass
class _InFlight:
    counted: bool = True


class DecodeSlots:
    """At most `limit` decodes at once, and whether more requests are in flight than that: a
    decode that starts while the daemon is busy is a light one (no optional model work), so
    everyone is answered fast before anyone is answered better. One user typing is never busy:
    a request stops counting before its slot passes to the next (a superseded one included)."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._limit = limit
        self._lock = threading.Lock()
        self._in_flight = 0  # completion requests between arrival and the end of their decode

    @contextmanager
    def request(self) -> Iterator[_InFlight]:
        """Count one completion request until its decode ends (or it ends without one)."""
        with self._lock:
            self._in_flight += 1
        ticket = _InFlight()
        try:
            yield ticket
        finally:
            self._leave(ticket)

    @contextmanager
    def decode(self, ticket: _InFlight) -> Iterator[bool]:
        """Hold a slot for one decode; yields whether the daemon is busy."""
        with self._slots:
            try:
                yield self._in_flight > self._limit
            finally:
                self._leave(ticket)  # before the slot is released

    def _leave(self, ticket: _InFlight) -> None:
        with self._lock:
            if ticket.counted:
                ticket.counted = False
                self._in_flight -= 1


def document_key(request: pb.CompleteRequest | pb.WarmRequest) -> str:
    """The state-cache key: the client's document id, else the path."""
    return request.document_id or request.path


def cancellation(context: grpc.ServicerContext) -> threading.Event:
    """Set once the client cancels or the deadline passes, also when that happened already
    (an RPC that waited for a worker thread past its deadline registers no callback)."""
    cancelled = threading.Event()
    if not context.add_callback(cancelled.set):
        cancelled.set()
    return cancelled


def check_keys(request: pb.CompleteRequest | pb.WarmRequest, limits: RequestLimits) -> None:
    """InvalidRequest when document_id or path is longer than `max_key_chars`."""
    for name in ("document_id", "path"):
        chars = len(getattr(request, name))
        if chars > limits.max_key_chars:
            raise InvalidRequest(
                f"{name} has {chars:,} characters; at most {limits.max_key_chars:,} are accepted"
            )


def validate(
    request: pb.CompleteRequest,
    limits: RequestLimits,
    default_max_chars: int,
    cancelled: threading.Event | None = None,
) -> Query:
    """The request as a Query, or InvalidRequest naming the field and its allowed range."""
    if not 0 <= request.n <= limits.max_candidates:
        raise InvalidRequest(f"n must be between 0 and {limits.max_candidates}, got {request.n}")
    if not 0 <= request.max_chars <= limits.max_chars:
        raise InvalidRequest(
            f"max_chars must be between 0 and {limits.max_chars}, got {request.max_chars}"
        )
    if not (
        math.isfinite(request.temperature) and 0 <= request.temperature <= limits.max_temperature
    ):
        raise InvalidRequest(
            f"temperature must be between 0 and {limits.max_temperature}, got {request.temperature}"
        )
    if not (math.isfinite(request.min_confidence) and 0 <= request.min_confidence <= 1):
        raise InvalidRequest(
            f"min_confidence must be between 0 and 1, got {request.min_confidence}"
        )
    if len(request.prefix) > limits.max_prefix_chars:
        raise InvalidRequest(
            f"prefix has {len(request.prefix):,} characters; at most {limits.max_prefix_chars:,} "
            "are accepted (send the tail before the cursor)"
        )
    if len(request.suffix) > limits.max_suffix_chars:
        raise InvalidRequest(f"suffix has more than {limits.max_suffix_chars:,} characters")
    check_keys(request, limits)
    return Query(
        prefix=request.prefix,
        suffix=request.suffix,
        n=request.n or 1,
        max_chars=request.max_chars or default_max_chars,
        temperature=request.temperature,
        min_confidence=request.min_confidence,
        document=document_key(request),
        cancelled=cancelled,
        # Only a document the client names: a path alone is a language hint (the shells send
        # one for all their terminals), not one document being edited.
        history=bool(request.document_id),
    )


FEEDBACK_EVENTS = {
    pb.FeedbackRequest.SHOWN: "shown",
    pb.FeedbackRequest.ACCEPTED: "accepted",
    pb.FeedbackRequest.PARTIALLY_ACCEPTED: "partially_accepted",
    pb.FeedbackRequest.DISMISSED: "dismissed",
}


class CompletionServicer(pb_grpc.CompletionServiceServicer):
    def __init__(
        self, slot: ModelSlot, feedback: FeedbackCounts, limits: RequestLimits | None = None
    ) -> None:
        self.slot = slot
        self.feedback = feedback
        self.limits = limits or RequestLimits()
        self._decoding = DecodeSlots(self.limits.concurrent_decodes)

    def Complete(
        self, request: pb.CompleteRequest, context: grpc.ServicerContext
    ) -> pb.CompleteResponse:
        with self._decoding.request() as ticket:
            return self._complete(request, context, ticket)

    def _complete(
        self, request: pb.CompleteRequest, context: grpc.ServicerContext, ticket: _InFlight
    ) -> pb.CompleteResponse:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:  # an answer in microseconds is still late
            raise DeadlineExceeded("the request's deadline passed before it was served")
        model = self.slot.get()  # one model for the whole request, even across a swap
        cancelled = cancellation(context)
        query = validate(request, self.limits, model.decoder.config.default_max_chars, cancelled)
        with self._decoding.decode(ticket) as busy:
            candidates = model.decoder.complete(replace(query, light=busy))
        return pb.CompleteResponse(
            candidates=[pb.Candidate(text=c.text, confidence=c.confidence) for c in candidates],
            model_version=model.version,
        )

    def Warm(self, request: pb.WarmRequest, context: grpc.ServicerContext) -> pb.WarmResponse:
        if not document_key(request):
            raise InvalidRequest("Warm needs a document_id or a path to file the state under")
        check_keys(request, self.limits)
        if len(request.text) > self.limits.max_prefix_chars:
            raise InvalidRequest(f"text has more than {self.limits.max_prefix_chars:,} characters")
        decoder = self.slot.get().decoder
        if not decoder.config.run_model:  # retrieval alone: no state would ever be read
            return pb.WarmResponse(chars_read=0)
        states = decoder.states
        # Interleaves with decodes per span; stops when the client gives up.
        states.warm(request.text, document_key(request), cancellation(context))
        return pb.WarmResponse(chars_read=min(len(request.text), states.config.warm_chars))

    def Feedback(
        self, request: pb.FeedbackRequest, context: grpc.ServicerContext
    ) -> pb.FeedbackResponse:
        if request.event not in FEEDBACK_EVENTS:
            raise InvalidRequest("event must be SHOWN, ACCEPTED, PARTIALLY_ACCEPTED or DISMISSED")
        self.feedback.add(request.client, FEEDBACK_EVENTS[request.event], request.count or 1)
        return pb.FeedbackResponse()


def retrieval_info(decoder: Decoder) -> pb.RetrievalInfo:
    """How completions are found and offered (retrieval, the model's part, typed-through lines)."""
    retriever = decoder.retriever
    declined_below = decoder.declined.declined_below
    if retriever is None or not retriever.config.enabled:
        return pb.RetrievalInfo(enabled=False, declined_below=declined_below)
    index = retriever.index
    return pb.RetrievalInfo(
        enabled=True,
        indexed_chars=index.indexed_chars if index else 0,
        indexed_places=index.indexed_places if index else 0,
        model_below=decoder.config.model_below,
        start_below=decoder.config.start_below,
        calibrated=retriever.config.weights != DEFAULT_WEIGHTS,
        declined_below=declined_below,
        **(freshness_info(index) if isinstance(index, LiveIndex) else {}),
    )


def freshness_info(index: LiveIndex) -> dict[str, float | int | bool | str]:
    """The index's freshness, as RetrievalInfo's fields."""
    fresh = index.freshness()
    return {
        "index_updated_unix": fresh.updated_unix,
        "index_pending_files": fresh.pending_files,
        "index_updated_files": fresh.updated_files,
        "index_rebuilds": fresh.rebuilds,
        "index_rebuilding": fresh.rebuilding,
        "index_error": fresh.error,
    }


def model_info(model: ServedModel) -> pb.ModelInfo:
    meta = model.bundle.meta
    corpus = meta.get("corpus", {})
    return pb.ModelInfo(
        version=model.version,
        created_unix=meta.get("created_unix", 0.0),
        val_bpc=meta.get("val_bpc", 0.0),
        parameters=meta.get("parameters", 0),
        vocab_size=model.bundle.tokenizer.vocab_size,
        train_files=corpus.get("train_files", 0),
        val_files=corpus.get("val_files", 0),
        train_chars=corpus.get("train_chars", 0),
        commit=corpus.get("commit", ""),
        config_json=json.dumps(meta.get("model", {})),
        bundle_dir=str(model.bundle.directory),
    )


def training_progress(p: Progress) -> pb.TrainingProgress:
    return pb.TrainingProgress(
        phase=p.phase,
        fraction=p.fraction,
        eta_seconds=p.eta_s,
        val_bpc=p.val_bpc,
        message=p.message,
        model_version=p.version,
    )


class ModelServicer(pb_grpc.ModelServiceServicer):
    def __init__(
        self,
        slot: ModelSlot,
        runner: TrainingRunner,
        stats: RequestMetrics,
        watcher: RepoWatcher,
        feedback: FeedbackCounts,
        idle: IdleClock,
        base_builder: BaseBuilder,
        started_by: str = "",
    ) -> None:
        self.slot = slot
        self.feedback = feedback
        self.idle = idle
        self.base_builder = base_builder
        self.started_by = started_by
        self.runner = runner
        self.stats = stats
        self.watcher = watcher
        self.listen_address = ""  # set by the server once bound
        self.started = time.monotonic()

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        model = self.slot.loaded
        return pb.StatusResponse(
            repo=str(self.runner.repo),
            store=str(self.runner.store_dir),
            model=model_info(model) if model else None,
            training_state=self.runner.state,
            last_training_result=self.runner.last_result,
            requests_total=self.stats.total,
            requests_failed=self.stats.failed,
            uptime_seconds=time.monotonic() - self.started,
            listen_address=self.listen_address,
            daemon_version=__version__,
            execution_provider=model.engine.provider if model else "",
            pid=os.getpid(),
            watching=self.watcher.config.enabled,
            file_events=self.watcher.events_seen,
            versions=self.slot.store.versions(),
            feedback=[
                pb.ClientFeedback(client=client, **counts)
                for client, counts in self.feedback.snapshot().items()
            ],
            retrieval=retrieval_info(model.decoder) if model else None,
            training=self._training(),
            started_by=self.started_by,
            idle_exit_minutes=self.idle.minutes or 0.0,
            stops_unix=self.idle.stops_unix(),
            base_build=pb.BaseBuild(**asdict(self.base_builder.state)),
        )

    def _training(self) -> pb.TrainingProgress | None:
        """The run in progress as last reported; None when none runs."""
        job = self.runner.job
        if job is None or job.finished or not job.events:
            return None
        return training_progress(job.events[-1])

    def Retrain(
        self, request: pb.RetrainRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TrainingProgress]:
        if not (math.isfinite(request.minutes) and 0 <= request.minutes <= 24 * 60):
            raise InvalidRequest(f"minutes must be between 0 and 1440, got {request.minutes}")
        for p in self.runner.start(request.minutes or None, full=request.full).follow():
            yield training_progress(p)

    def Rollback(self, request: pb.RollbackRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return model_info(self.slot.rollback(request.version))
