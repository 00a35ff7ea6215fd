"""The daemon's entry point: load or train a model, serve it, keep it fresh, stop cleanly."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from completiond.completion.calibration import CALIBRATION_FILE
from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import ModelStore
from completiond.core.corpus import fingerprint, read_files
from completiond.core.durable import private_dir
from completiond.core.errors import CorpusError, TrainingBusy, TrainingFailed
from completiond.core.index import INDEX_FILE
from completiond.core.locations import default_socket_path, default_store_dir
from completiond.core.progress import ProgressBar

from .decoder import DecoderConfig
from .engine import EngineConfig
from .feedback import FeedbackCounts
from .idle import IdleClock
from .idle_base import BaseBuilder, IdleBaseConfig
from .live_index import LiveIndex, LiveIndexConfig
from .metrics import RequestMetrics
from .model_slot import ModelSlot
from .server import Server, ServerConfig
from .service import CompletionServicer, ModelServicer, RequestLimits
from .state_cache import ContextConfig
from .trainer import TrainerConfig, TrainingRunner
from .watcher import RepoWatcher, WatchConfig

log = logging.getLogger(__name__)

FIRST_MODEL_THREADS = max(1, (os.cpu_count() or 2) - 1)
IDLE_CHECK_S = 1.0  # how often the idle exit looks at the clock (a training run touches it)


@dataclass
class DaemonConfig:
    repo: Path
    store: Path | None = None  # default: the user's cache dir (see core/locations.py)
    # A fresh repository gets a quick first model (answers within about a minute), then the
    # full budget (trainer.minutes) continues from it in the background.
    first_train_minutes: float = 0.75
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    index: LiveIndexConfig = field(default_factory=LiveIndexConfig)
    limits: RequestLimits = field(default_factory=RequestLimits)
    idle_base: IdleBaseConfig = field(default_factory=IdleBaseConfig)  # off unless asked for
    # Stop after this many minutes with no client call and no training run (None: never);
    # the editor bridge starts its daemons so, and says it did (started_by "lsp").
    idle_exit_minutes: float | None = None
    started_by: str = ""


class Daemon:
    """All parts of a running daemon, wired; `serve_forever` is what `completiond serve` runs."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.repo = config.repo.resolve()
        if not self.repo.is_dir():
            raise CorpusError(f"repository {config.repo} is not a directory")
        store_dir = private_dir(config.store or default_store_dir(self.repo))
        if config.server.socket_path is None and config.server.listen is None:
            config.server.socket_path = default_socket_path(self.repo)
        self.index = LiveIndex(self.repo, store_dir, config.index)
        self.slot = ModelSlot(
            ModelStore(store_dir),
            config.engine,
            config.decoder,
            config.context,
            config.retrieval,
            self.index,
        )
        self.runner = TrainingRunner(
            self.repo, store_dir, config.trainer, self._on_published, self._on_rejected
        )
        self.watcher = RepoWatcher(
            self.repo, config.watch, self.retrain_if_changed, self.index.changed
        )
        self.idle = IdleClock(config.idle_exit_minutes)
        self.base_builder = BaseBuilder(
            self.repo,
            store_dir,
            config.idle_base,
            config.trainer.model,
            config.trainer.train.get("device", "auto"),
            lambda: self.runner.state == "training",
            self._train_from_base,
        )
        self.metrics = RequestMetrics(self._on_request)
        self.feedback = FeedbackCounts(store_dir / "feedback.json")
        self.server = Server(
            config.server,
            CompletionServicer(self.slot, self.feedback, config.limits),
            ModelServicer(
                self.slot,
                self.runner,
                self.metrics,
                self.watcher,
                self.feedback,
                self.idle,
                self.base_builder,
                config.started_by,
            ),
            self.metrics,
        )
        self.metrics.watch_state(
            lambda: self.slot.loaded.version if self.slot.loaded else "",
            lambda: self.runner.state == "training",
        )
        self._stop = threading.Event()

    def _on_published(self, version: str) -> None:
        """A training run made `version` current: load, warm, then swap it in."""
        self.slot.load_current()
        self.server.set_serving(True)
        self._after_training()

    def _on_rejected(self) -> None:
        self.slot.reload_calibration()
        self._after_training()

    def _on_request(self, method: str) -> None:
        self.idle.touch()
        self.base_builder.activity(method)

    def _train_from_base(self) -> bool:
        """The idle build finished the base: one full training run starts from it (see
        training/run.py); False when a run is in progress already."""
        try:
            self.runner.start()
        except TrainingBusy:
            return False
        return True

    def _after_training(self) -> None:
        if not self.config.watch.enabled:  # nothing told the index what changed meanwhile
            self.index.check_disk()

    def retrain_if_changed(self) -> bool:
        """Start a background retrain if the training text differs from the current model's,
        fine-tuning for as long as the change is large (TrainerConfig.minutes_for).

        Called by the watcher once changes have settled; a busy trainer means: try again later."""
        current = self.index.fingerprint() or fingerprint(read_files(self.repo)[0])
        model = self.slot.loaded
        if model is not None and model.bundle.meta["corpus"].get("fingerprint") == current:
            return False
        corpus = model.bundle.meta["corpus"] if model is not None else {}
        chars = int(corpus.get("train_chars", 0)) + int(corpus.get("val_chars", 0))
        minutes = self.config.trainer.minutes_for(self.index.changed_chars, chars)
        try:
            self.runner.start(minutes)
        except TrainingBusy:
            self.watcher.poke()
            return False
        self.index.retrain_started()
        log.info("repository changed: fine-tuning for %.2f min", minutes)
        return True

    def start(self, out: TextIO) -> None:
        """Load the newest usable model (reporting any unusable one) and the index, listen,
        bring the index up to date, watch."""
        self.index.load()
        for problem in self.slot.load_newest_usable():
            print(f"completiond: {problem}", file=out, flush=True)
        self.server.set_serving(self.slot.loaded is not None)
        self.server.start()
        if not (self.slot.store.root / INDEX_FILE).exists():
            # Until the index is built (in the background) only the current file is searched.
            print("completiond: building the repository index", file=out, flush=True)
        if self.slot.loaded is not None and not (self.slot.store.root / CALIBRATION_FILE).exists():
            # A store from before retrieval: one background run fits the confidences to the
            # repository; until then the default weights serve.
            self.runner.start()
            print(
                "completiond: confidences not fitted to this repository yet: "
                "fitting them with a background retrain",
                file=out,
                flush=True,
            )
        self.index.start()
        if self.config.watch.enabled:
            self.watcher.start()
        if self.config.idle_base.enabled:
            print(
                "completiond: building the base model of the repository's language when idle "
                f"({self.config.idle_base.quiet_minutes:g} min without completion requests; "
                f"log in {self.base_builder.log_path})",
                file=out,
                flush=True,
            )
            self.base_builder.start()
        print(f"completiond: serving {self.repo} on {self.server.address}", file=out, flush=True)
        if self.config.server.metrics_port is not None:
            port = self.metrics.serve(self.config.server.metrics_port)
            print(f"completiond: metrics on http://127.0.0.1:{port}/metrics", file=out, flush=True)

    def train_first_model(self, out: TextIO) -> None:
        """A quick model with most of the machine (nothing is served yet), showing progress; then
        the full budget continues from it in the background."""
        print("completiond: no model yet; training a quick first one", file=out, flush=True)
        bar = ProgressBar(out)
        # All cores but one: torch's threads collapse (steps many times slower) when another
        # process holds a core, and a user's machine is rarely idle.
        job = self.runner.start(self.config.first_train_minutes, threads=FIRST_MODEL_THREADS)
        for progress in job.follow():
            if self._stop.is_set():
                return
            bar.update(progress)
            if progress.phase == "failed":
                raise TrainingFailed(progress.message)
        model = self.slot.get()
        print(f"completiond: serving model {model.version}", file=out, flush=True)
        self.runner.start()
        print(
            f"completiond: improving it in the background ({self.config.trainer.minutes:g} min; "
            "`completiond status` shows progress)",
            file=out,
            flush=True,
        )

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop watching and training, then the server (in-flight requests finish first)."""
        if self.config.watch.enabled:
            self.watcher.stop()
        self.index.stop()
        self.base_builder.stop()
        self.runner.stop()
        self.server.stop()
        self.metrics.stop()
        self.feedback.save()

    def _wait_until_stopped_or_idle(self, out: TextIO) -> None:
        """Until SIGINT/SIGTERM, or, with an idle exit, a quiet period with no client call and
        no training run."""
        while True:
            if self.runner.state == "training":
                self.idle.touch()
            left = self.idle.seconds_left()
            if left is not None and left <= 0:
                minutes = self.config.idle_exit_minutes
                print(f"completiond: no client for {minutes:g} min: stopping", file=out, flush=True)
                return
            if self._stop.wait(IDLE_CHECK_S if left is None else min(IDLE_CHECK_S, left)):
                return

    def serve_forever(self, out: TextIO = sys.stderr) -> int:
        """Run until SIGINT/SIGTERM; in-flight requests finish before the process exits."""
        os.umask(0o077)  # anything written on the daemon's behalf is this user's only
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())
        self.start(out)
        try:
            if self.slot.loaded is None:
                self.train_first_model(out)
            self._wait_until_stopped_or_idle(out)
        finally:
            self.close()
            print("completiond: stopped", file=out, flush=True)
        return 0
