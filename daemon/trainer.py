"""Runs training in a child process and reports its progress.

The child (`python -I -m completiond.training`, isolated: see training/child.py) imports torch,
so the daemon never does; it runs at lower priority with its own thread budget. Whatever happens
to it (an error, SIGKILL, a bundle that does not verify), the served model is replaced only after
the new bundle loads.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from completiond.core.child import training_command
from completiond.core.durable import open_private_log, private_dir
from completiond.core.errors import TrainingBusy
from completiond.core.progress import FINAL_PHASES, Progress


@dataclass
class TrainerConfig:
    minutes: float = 5.0  # budget of a retrain (of the whole budget, for a large change)
    # A retrain after the repository changed fine-tunes in proportion to the change: its whole
    # budget once the lines added or removed make this share of the corpus, at least
    # `min_minutes` (a one-line edit barely moves the model; the index has its names already).
    full_change: float = 0.05
    min_minutes: float = 0.25
    threads: int = 1  # torch threads in the child: leave a core to serving
    nice: int = 10  # the child's priority offset
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides, e.g. hidden_size
    train: dict[str, Any] = field(default_factory=dict)  # other TrainConfig overrides

    def minutes_for(self, changed_chars: int, corpus_chars: int) -> float:
        """The budget of a fine-tune after `changed_chars` of lines were added or removed in a
        corpus of `corpus_chars` (the whole budget when either is unknown: 0)."""
        if changed_chars <= 0 or corpus_chars <= 0:
            return self.minutes
        share = changed_chars / corpus_chars / self.full_change
        return min(self.minutes, max(self.min_minutes, self.minutes * share))


class TrainingJob:
    """One training child and the progress it reported; followed by any number of readers."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self.workdir = log_path.parent  # the store: never the repository (see training/child.py)
        self.events: list[Progress] = []
        self._changed = threading.Condition()
        self._child: subprocess.Popen[str] | None = None
        self._stopping = False

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1].phase in FINAL_PHASES

    def publish(self, progress: Progress) -> None:
        with self._changed:
            self.events.append(progress)
            self._changed.notify_all()

    def follow(self, timeout_s: float = 0.5) -> Iterator[Progress]:
        """Every event from the start until the final one (done, rejected, failed)."""
        seen = 0
        while True:
            with self._changed:
                while seen == len(self.events):
                    self._changed.wait(timeout_s)
                new = self.events[seen:]
            seen += len(new)
            yield from new
            if new and new[-1].phase in FINAL_PHASES:
                return

    def run_child(self) -> tuple[Progress | None, int]:
        """Run the child to its end; returns its final report (if any) and exit status."""
        final: Progress | None = None
        with open_private_log(self.log_path) as log_file:
            self._child = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                text=True,
            )
            if self._stopping:
                self._child.kill()
            self.publish(Progress("starting", message=f"training child pid {self._child.pid}"))
            with self._child as child:  # closes the pipe and reaps the child
                assert child.stdout is not None
                for line in child.stdout:
                    try:
                        progress = Progress.from_json(line)
                    except ValueError:
                        continue  # stray output of a library: not ours to parse
                    if progress.phase in FINAL_PHASES:
                        final = progress
                    else:
                        self.publish(progress)
            return final, child.returncode

    def stop(self) -> None:
        """Kill the child (daemon shutdown); the run then ends as "failed"."""
        self._stopping = True
        if self._child is not None and self._child.poll() is None:
            self._child.kill()


class TrainingRunner:
    """Starts at most one training job at a time, in a background thread."""

    def __init__(
        self,
        repo: Path,
        store_dir: Path,
        config: TrainerConfig,
        on_published: Callable[[str], None],
        on_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        self.repo = repo
        self.store_dir = store_dir
        self.config = config
        self.on_published = on_published  # loads the new bundle; raises if it does not verify
        self.on_rejected = on_rejected  # the model stays, but the run refitted the calibration
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None
        self.runs = 0  # training runs started since the daemon started
        self.last_result = ""

    @property
    def state(self) -> str:
        job = self.job
        return "training" if job is not None and not job.finished else "idle"

    def command(self, minutes: float | None, threads: int | None, full: bool) -> list[str]:
        train = {
            **self.config.train,
            "minutes": minutes or self.config.minutes,
            "threads": self.config.threads if threads is None else threads,
            "index": False,  # the daemon keeps the index up to date itself
            **({"warm_start": False} if full else {}),
        }
        return training_command(
            "--repo",
            str(self.repo),
            "--store",
            str(self.store_dir),
            "--nice",
            str(self.config.nice),
            "--config",
            json.dumps({"model": self.config.model, "train": train}),
        )

    def start(
        self, minutes: float | None = None, threads: int | None = None, full: bool = False
    ) -> TrainingJob:
        """Start a run (a fine-tune of the current model unless `full`); TrainingBusy when one
        is in progress. Follow it with `job.follow()`."""
        with self._lock:
            if self.state == "training":
                raise TrainingBusy("a training run is already in progress")
            private_dir(self.store_dir)
            job = TrainingJob(self.command(minutes, threads, full), self.store_dir / "train.log")
            self.job = job
            self.runs += 1
        threading.Thread(target=self._run, args=(job,), name="training", daemon=True).start()
        return job

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()

    def _run(self, job: TrainingJob) -> None:
        started = time.time()
        try:
            final, code = job.run_child()
        except OSError as exc:
            final, code = Progress("failed", message=f"cannot start training: {exc}"), 1
        if final is None or (final.phase == "done" and code != 0):
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            final = Progress(
                "failed", message=f"training process ended ({how}); see {job.log_path}"
            )
        if final.phase == "done":
            try:
                self.on_published(final.version)
            except Exception as exc:  # the old model keeps serving; say why
                final = Progress("failed", message=f"new model not served: {exc}")
        elif final.phase == "rejected":
            self.on_rejected()
        outcome = {"done": "ok"}.get(final.phase, final.phase)
        self.last_result = f"{outcome}: {final.message} (after {time.time() - started:.0f} s)"
        job.publish(final)
