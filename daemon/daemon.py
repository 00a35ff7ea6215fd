"""The daemon's entry point: load or train a model, serve it, stop cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from completiond.errors import BundleError, CorpusError, TrainingFailed
from completiond.training.bundle import ModelStore
from completiond.training.locations import default_socket_path, default_store_dir
from completiond.training.progress import ProgressBar

from .decoder import DecoderConfig
from .engine import EngineConfig
from .model_slot import ModelSlot
from .server import Server, ServerConfig
from .service import CompletionServicer, ModelServicer, RequestLimits, RequestStats
from .state_cache import ContextConfig
from .trainer import TrainerConfig, TrainingRunner

log = logging.getLogger(__name__)


@dataclass
class DaemonConfig:
    repo: Path
    store: Path | None = None  # default: the user's cache dir (see training/locations.py)
    first_train_minutes: float = 3.0  # budget of the first model when the repository has none
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    limits: RequestLimits = field(default_factory=RequestLimits)


class Daemon:
    """All parts of a running daemon, wired; `serve_forever` is what `completiond serve` runs."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.repo = config.repo.resolve()
        if not self.repo.is_dir():
            raise CorpusError(f"repository {config.repo} is not a directory")
        store_dir = config.store or default_store_dir(self.repo)
        if config.server.socket_path is None and config.server.listen is None:
            config.server.socket_path = default_socket_path(self.repo)
        self.slot = ModelSlot(ModelStore(store_dir), config.engine, config.decoder, config.context)
        self.runner = TrainingRunner(self.repo, store_dir, config.trainer, self._on_published)
        self.stats = RequestStats()
        self.server = Server(
            config.server,
            CompletionServicer(self.slot, config.limits),
            ModelServicer(self.slot, self.runner, self.stats, ""),
            self.stats,
        )
        self._stop = threading.Event()

    def _on_published(self, version: str) -> None:
        self.slot.load_current()
        self.server.set_serving(True)

    def start(self, out: TextIO) -> None:
        """Load the current model if there is one (a bad one is reported, not fatal), listen."""
        try:
            self.slot.load_current()
        except BundleError as exc:
            if self.slot.store.current_version() is not None:
                print(f"completiond: the stored model is unusable: {exc}", file=out)
        self.server.set_serving(self.slot.loaded is not None)
        self.server.start()
        print(f"completiond: serving {self.repo} on {self.server.address}", file=out, flush=True)

    def train_first_model(self, out: TextIO) -> None:
        """Train in the child with the whole machine (nothing is served yet), showing progress."""
        print("completiond: no model yet; training a first one", file=out, flush=True)
        bar = ProgressBar(out)
        job = self.runner.start(self.config.first_train_minutes, threads=0)
        for progress in job.follow():
            if self._stop.is_set():
                return
            bar.update(progress)
            if progress.phase == "failed":
                raise TrainingFailed(progress.message)

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self, out: TextIO = sys.stderr) -> int:
        """Run until SIGINT/SIGTERM; in-flight requests finish before the process exits."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())
        self.start(out)
        try:
            if self.slot.loaded is None:
                self.train_first_model(out)
                if self.slot.loaded is not None:
                    print(f"completiond: serving model {self.slot.loaded.version}", file=out)
            self._stop.wait()
        finally:
            self.runner.stop()
            self.server.stop()
            print("completiond: stopped", file=out, flush=True)
        return 0
