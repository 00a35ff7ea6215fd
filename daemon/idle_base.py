"""The base model of the repository's language, built while nobody types (`serve
--pretrain-when-idle`).

Only users who run `completiond pretrain` get a base otherwise, and a repository's model learns
more from a base than from nothing (training/run.py starts from it). The build is that command
in a child process (niced, one torch thread; never in the serving process). It starts after a
quiet period without completion requests and never while the daemon trains; a completion request
or a training run kills it, and its checkpoint makes the next start resume. The child holds
`bases/<language>.lock`, so a second daemon of the same language waits for its next quiet period.
Once the base is finished the daemon trains once, and the model starts from the base. A failed
build never touches serving; after `max_failures` the builder stops trying and says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from completiond.core.child import pretrain_command
from completiond.core.discovery import base_being_built, bases_dir, language_of, read_base_meta
from completiond.core.files import select_files
from completiond.core.progress import Progress

from .idle import IdleClock
from .trainer import TrainingJob

log = logging.getLogger(__name__)

# Requests of someone typing: these pause the build. Status, Retrain and Rollback do not (a
# status bar polling Status would keep a base from ever being built).
ACTIVE_METHODS = frozenset({"Complete", "Warm", "Feedback"})
CHECK_S = 1.0  # how often the builder looks at the clock and the training state
LOG_FILE = "pretrain.log"
# `pretrain`'s options for the ModelConfig fields `serve` sets (its --hidden-size, --layers).
MODEL_FLAGS = {"hidden_size": "--hidden-size", "num_layers": "--layers"}


@dataclass
class IdleBaseConfig:
    # Off by default: a build costs one core for up to `minutes` (`serve --pretrain-when-idle`).
    enabled: bool = False
    quiet_minutes: float = 2.0  # without completion requests before a build starts or resumes
    minutes: float = 60.0  # the base's budget (pretrain's default); one trained as long is done
    checkpoint_minutes: float = 2.0  # progress saved this often: a pause loses at most this much
    threads: int = 1  # torch threads of the build: serving keeps the other core
    max_failures: int = 3  # failed builds before the builder gives up (status says so)
    sources: list[Path] = field(default_factory=list)  # pretrain's --from; none: installed code


@dataclass(frozen=True)
class BaseBuildState:
    """What `status` shows of the builder."""

    state: str  # off, none (no base for the language), waiting, running, finished, failed
    language: str = ""
    fraction: float = 0.0  # of the base's budget, as last reported by the build
    eta_seconds: float = 0.0  # while running
    failures: int = 0
    message: str = ""


class BaseBuilder:
    """Runs the build in quiet periods until the base is finished or it gave up."""

    def __init__(
        self,
        repo: Path,
        store_dir: Path,
        config: IdleBaseConfig,
        model: dict[str, Any],
        device: str,
        training: Callable[[], bool],
        on_built: Callable[[], bool],
    ) -> None:
        self.repo = repo
        self.log_path = store_dir / LOG_FILE  # beside train.log
        self.config = config
        self.model = model  # the daemon's ModelConfig overrides: a base serves only its shape
        self.device = device  # serve's --device, for the build as for the training runs
        self.training = training  # whether the daemon's own training runs
        self.on_built = on_built  # starts a training run; False when one is running already
        self.quiet = IdleClock(config.quiet_minutes)
        self.job: TrainingJob | None = None
        self._state = BaseBuildState("waiting" if config.enabled else "off")
        self._paused = ""  # why the running build was killed (empty: it was not)
        self._train_pending = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # no build starts once stop() ran
        unknown = set(model) - set(MODEL_FLAGS)
        if config.enabled and unknown:
            log.warning("the base is built with pretrain's defaults for %s", sorted(unknown))

    @property
    def state(self) -> BaseBuildState:
        """The builder's state, with the running build's last reported progress."""
        job, state = self.job, self._state
        if state.state == "running" and job is not None and job.events:
            last = job.events[-1]
            return replace(state, fraction=last.fraction, eta_seconds=last.eta_s,
                           message=last.message)  # fmt: skip
        return state

    def start(self) -> None:
        if self.config.enabled:
            threading.Thread(target=self._loop, name="idle-base", daemon=True).start()

    def activity(self, method: str) -> None:
        """A request was answered (the metrics hook): completion requests start a new quiet
        period and pause a running build."""
        if method in ACTIVE_METHODS:
            self.quiet.touch()
            if self._state.state == "running":  # else the next look is soon enough
                self._wake.set()

    def stop(self) -> None:
        """Daemon shutdown: kill a running build (its checkpoint stays for the next start)."""
        with self._lock:
            self._stop.set()
            job = self.job
        self._wake.set()
        if job is not None:
            job.stop()

    def command(self, language: str) -> list[str]:
        args = [
            "--repo", str(self.repo), "--language", language,
            "--minutes", f"{self.config.minutes:g}",
            "--checkpoint-minutes", f"{self.config.checkpoint_minutes:g}",
            "--threads", str(self.config.threads), "--device", self.device, "--json-progress",
        ]  # fmt: skip
        for name, flag in MODEL_FLAGS.items():
            if name in self.model:
                args += [flag, str(self.model[name])]
        for source in self.config.sources:
            args += ["--from", str(source)]
        return pretrain_command(*args)

    def _set(self, state: str, message: str, **changes: Any) -> None:
        self._state = replace(self._state, state=state, message=message, **changes)

    def _loop(self) -> None:
        # A daemon thread: an unexpected error ends the builder (said in status), never serving.
        try:
            language = language_of(select_files(self.repo).files)
            if language is None:
                self._set("none", "no base model exists for this repository's language")
                return
            self._set("waiting", "", language=language)
            if self._finished(language):
                return
            while not self._stop.is_set() and self._step(language):
                self._wake.wait(CHECK_S)
                self._wake.clear()
        except Exception as exc:
            log.exception("the idle base build stopped")
            self._set("failed", f"internal error: {type(exc).__name__}: {exc}")

    def _finished(self, language: str) -> bool:
        """Whether the base on disk was trained for the whole budget (a shorter one, built by
        `pretrain --minutes`, is continued)."""
        meta = read_base_meta(bases_dir() / language)
        if meta is None or float(meta.get("seconds", 0)) < self.config.minutes * 60 - 1.0:
            return False
        self._set("finished", f"{float(meta['seconds']) / 60:.0f} min, validation "
                  f"{float(meta['val_bpc']):.3f} bits/char", fraction=1.0)  # fmt: skip
        return True

    def _step(self, language: str) -> bool:
        """One look at the clock and the build; False once there is nothing left to do."""
        running = self._state.state == "running"
        if running:
            why = self._why_not_now(language, running=True)
            if why and self.job is not None and not self._paused:
                self._paused = why
                self.job.stop()
            return True
        if self._state.state == "finished" or self._state.state == "failed":
            if self._train_pending and not self.training():
                self._train_pending = not self.on_built()
            return self._train_pending
        why = self._why_not_now(language, running=False)
        if why:
            self._set("waiting", self._paused or why)
            return True
        self._build(language)
        return True

    def _why_not_now(self, language: str, running: bool) -> str:
        """Why the build must not run now; empty when it may."""
        left = self.quiet.seconds_left()
        if left is not None and left > 0:
            if running:
                return "paused by completion requests; resumes after a quiet period"
            return f"starts after {self.config.quiet_minutes:g} min without completion requests"
        if self.training():
            return "paused while the daemon trains" if running else "the daemon is training"
        if not running and base_being_built(bases_dir() / language):
            return f"another process is building the {language} base"
        return ""

    def _build(self, language: str) -> None:
        with self._lock:
            if self._stop.is_set():  # the daemon stopped since the loop looked
                return
            job = TrainingJob(self.command(language), self.log_path)
            self.job = job
        self._paused = ""
        self._set("running", "starting")
        threading.Thread(target=self._run, args=(job, language), daemon=True).start()

    def _run(self, job: TrainingJob, language: str) -> None:
        try:
            final, code = job.run_child()
        except OSError as exc:
            final, code = Progress("failed", message=f"cannot start pretrain: {exc}"), 1
        if self._stop.is_set():  # killed by the daemon's shutdown: not a failed build
            return
        fraction = job.events[-1].fraction if job.events else self._state.fraction
        if self._paused:
            self._set("waiting", self._paused, fraction=fraction)
        elif final is not None and final.phase == "done" and code == 0:
            self._set("finished", final.message, fraction=1.0)
            log.info("the %s base is built: training from it", language)
            self._train_pending = True
        elif base_being_built(bases_dir() / language):  # another builder won the race for it
            self._set("waiting", f"another process is building the {language} base")
        else:
            self._failed(final, code, fraction)
        self._wake.set()

    def _failed(self, final: Progress | None, code: int, fraction: float) -> None:
        """Count a failed build; try again after the next quiet period, or give up."""
        failures = self._state.failures + 1
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        why = final.message if final is not None and final.message else _last_line(self.log_path)
        why = f"{why or f'pretrain ended ({how})'}; see {self.log_path}"
        self.quiet.touch()
        if failures >= self.config.max_failures:
            self._set("failed", why, failures=failures, fraction=fraction)
        else:
            self._set("waiting", f"failed: {why}; tries again after a quiet period",
                      failures=failures, fraction=fraction)  # fmt: skip
        log.warning(
            "idle base build failed (%d of %d): %s", failures, self.config.max_failures, why
        )


def _last_line(path: Path) -> str:
    """The last line of the build's log: `completiond: <why>` when pretrain failed cleanly."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
