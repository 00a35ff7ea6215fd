"""Training on several processes with torch.distributed (DistributedDataParallel).

One machine: `train_distributed(repo, store_dir, model_config, train_config, nproc)` (what
`completiond train --nproc N` runs) starts N training children on this machine, gloo on CPUs and
NCCL on GPUs (one GPU per process), and returns rank 0's `RunResult`. Each process uses
`cores // N` torch threads unless `TrainConfig.threads` says otherwise. The launcher hosts the
rendezvous store on the loopback interface (`loopback_store`), as torchrun's agent does.

Several machines: start the training child with torchrun on every machine; it reads RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment.
For two machines with four GPUs each:

    # on the first machine (HOST0); the same with --node-rank 1 on the second
    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 \\
        --master-addr HOST0 --master-port 29500 \\
        -m completiond.training --repo /src/project --store /models/project --nice 0 \\
        --config '{"train": {"minutes": 10, "device": "cuda"}}'

The repository must be at the same path on every machine (each process reads its own files);
the store is only written on the machine of rank 0, whose standard output carries the progress
(one JSON object per line, as for the daemon's training child). `--config` takes the same
`{"model": {...}, "train": {...}}` as the training child always has.

How the work is split:
- Rank 0 reads the corpus, chooses the alphabet, the architecture and whether to fine-tune the
  current model, and sends that to the others; DDP starts every rank from rank 0's weights.
- The training files are sharded by file, deterministically: largest first, each to the rank
  with the fewest characters so far (ties: the lower rank), so shards are balanced. Each rank
  reads only its own files (in pieces above `TrainConfig.stream_above_chars`). With fewer
  training files than ranks every rank reads the whole (small) training text.
- Every rank runs `batch_size` streams (`gpu_batch_size` on a GPU); DDP averages the gradients,
  so a step sees N times the characters of a single process at the same learning rate.
- Rank 0 validates, keeps the best weights and decides when to stop (budget, `max_steps` or
  early stopping): its decision and learning-rate schedule reach all ranks every step.
- Only rank 0 exports, checks and publishes the bundle.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist

from completiond.core.bundle import ModelStore, load_bundle
from completiond.core.child import training_command
from completiond.core.errors import TrainingFailed
from completiond.core.progress import FINAL_PHASES, Progress
from completiond.core.tokenizer import CharTokenizer

from .model import CharLSTM, ModelConfig
from .run import (
    TRAIN_SPAN,
    Prepared,
    RunResult,
    deadline_for,
    prepare,
    publish,
    report_start,
    streams_from_files,
    train_repository,
)
from .train import (
    ProgressFn,
    StreamedText,
    TrainConfig,
    TrainData,
    read_training_texts,
    resolve_device,
    train,
)


def _ignore(_: Progress) -> None:
    pass


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job, as torchrun (or train_distributed) describes it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environ(cls) -> DistEnv | None:
        """The job from RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE; None when not in one."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world < 2:
            return None
        if "RANK" not in os.environ:
            raise ValueError(f"WORLD_SIZE is {world} but RANK is not set: start with torchrun")
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return cls(rank, world, local_rank, local_world)


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shard_files(files: list[str], sizes: list[int], world: int) -> list[list[str]]:
    """Deterministic, balanced sharding by file: largest first (ties by path), each to the rank
    with the fewest characters so far (ties: the lower rank). Each shard is sorted."""
    loads = [0] * world
    shards: list[list[str]] = [[] for _ in range(world)]
    for size, path in sorted(zip(sizes, files, strict=True), key=lambda sp: (-sp[0], sp[1])):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shards[rank].append(path)
        loads[rank] += size
    return [sorted(shard) for shard in shards]


def _plan(repo: Path, prepared: Prepared, train_config: TrainConfig, world: int) -> dict[str, Any]:
    """What rank 0 tells the others: alphabet, architecture, and who reads which files."""
    corpus = prepared.corpus
    files = corpus.train_files
    whole = not corpus.val_files or len(files) < world  # a single file split by lines, or few
    sizes = []
    for rel in files:
        try:
            sizes.append((repo / rel).stat().st_size)
        except OSError:
            sizes.append(0)
    plan: dict[str, Any] = {
        "tokenizer": prepared.tokenizer.to_json(),
        "model": asdict(prepared.config),
        "stream": streams_from_files(corpus, train_config),
        "text": corpus.train_text if whole else None,
        "shards": [files] * world if whole else shard_files(files, sizes, world),
    }
    by_path = dict(zip(files, sizes, strict=True))
    plan["shard_bytes"] = [sum(by_path[f] for f in shard) for shard in plan["shards"]]
    return plan


def _shard_data(
    repo: Path, plan: dict[str, Any], rank: int, tokenizer: CharTokenizer, config: TrainConfig
) -> TrainData:
    if plan["text"] is not None:
        return tokenizer.encode(plan["text"])
    files = plan["shards"][rank]
    if plan["stream"]:
        chars = plan["shard_bytes"][rank]  # bytes >= characters: close enough to size a batch
        return StreamedText(repo, files, tokenizer, chars, config.stream_piece_chars)
    return tokenizer.encode("".join(read_training_texts(repo, files)))


def run_worker(
    repo: Path,
    store_dir: Path,
    model_config: ModelConfig | None,
    train_config: TrainConfig,
    on_progress: ProgressFn = _ignore,
    env: DistEnv | None = None,
) -> RunResult | None:
    """One rank of a distributed run (MASTER_ADDR/MASTER_PORT from the environment); returns
    the published bundle's RunResult on rank 0, None on the others."""
    env = env or DistEnv.from_environ()
    if env is None:
        raise ValueError("not started as part of a distributed job (WORLD_SIZE is not set)")
    device = resolve_device(train_config.device, env.local_rank)
    if train_config.threads <= 0:
        train_config = replace(
            train_config, threads=max(1, cpu_cores() // max(1, env.local_world_size))
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    deadline = deadline_for(train_config, time.monotonic())
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timedelta(seconds=max(600.0, 2 * 60 * train_config.minutes)),
    )
    with ExitStack() as held:  # rank 0 holds the store's training lock until it returns
        prepared: Prepared | None = None
        try:
            failure: BaseException | None = None
            plan: dict[str, Any] | None = None
            if env.rank == 0:
                try:
                    store = ModelStore(store_dir)
                    held.enter_context(store.training_lock())
                    prepared = prepare(repo, store, model_config, train_config, None, on_progress)
                    plan = _plan(repo, prepared, train_config, env.world_size)
                except Exception as exc:  # told to the other ranks, then raised here
                    failure, plan = exc, {"error": str(exc)}
            box = [plan]
            dist.broadcast_object_list(box, src=0)
            plan = box[0]
            if failure is not None:
                raise failure
            assert plan is not None
            if "error" in plan:
                raise TrainingFailed(f"rank 0 could not prepare the run: {plan['error']}")
            tokenizer = CharTokenizer.from_json(plan["tokenizer"])
            if prepared is not None:
                model = prepared.model()
                prepared.corpus.train_text = ""  # rank 0 too reads only its shard from now on
                prepared.streamed = plan["stream"]
                report_start(prepared, model, train_config.minutes * 60, on_progress)
                val_ids = prepared.val_ids
            else:
                model = CharLSTM(ModelConfig(**plan["model"]))  # DDP copies rank 0's weights
                val_ids = np.zeros(0, np.int64)
            data = _shard_data(repo, plan, env.rank, tokenizer, train_config)
            result = train(model, data, val_ids, train_config, deadline, on_progress, TRAIN_SPAN)
        finally:
            dist.destroy_process_group()
        if prepared is None:
            return None
        extra = {
            "distributed": {
                "world_size": env.world_size,
                "backend": "nccl" if device.type == "cuda" else "gloo",
                "threads_per_process": train_config.threads,
                "shard_files": [len(s) for s in plan["shards"]],
                "shard_bytes": plan["shard_bytes"],
                "whole_text_on_every_rank": plan["text"] is not None,
            }
        }
        store = ModelStore(store_dir)
        return publish(repo, store, prepared, train_config, result, on_progress, extra)


def loopback_store(world_size: int) -> tuple[dist.TCPStore, socket.socket]:
    """The run's rendezvous store, hosted by the launcher as torchrun's agent hosts it: it
    outlives every rank (hosted by rank 0, the other ranks were held until rank 0 exited after
    publishing, and one of them sometimes aborted as the store went away), and it listens on
    the loopback interface only (TCPStore's own socket listens on every interface). The
    returned socket is the store's listener: keep it open as long as the store."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        world_size,
        is_master=True,
        wait_for_workers=False,
        master_listen_fd=listener.fileno(),
    )
    return store, listener


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


class _LocalRanks:
    """The processes of a run on this machine: rank 0's stdout carries the progress, every
    other output goes to log files in `logs`, shown when a rank fails."""

    def __init__(self, command: list[str], nproc: int, logs: Path) -> None:
        self.command, self.nproc, self.logs = command, nproc, logs
        self.procs: list[subprocess.Popen[str]] = []
        self.files: list[IO[str]] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.store: tuple[dist.TCPStore, socket.socket] | None = None

    def start(self) -> None:
        self.store = loopback_store(self.nproc)
        port = self.store[1].getsockname()[1]
        for rank in range(self.nproc):
            env = {
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "TORCHELASTIC_USE_AGENT_STORE": "True",  # every rank a client of ours
                "RANK": str(rank),
                "WORLD_SIZE": str(self.nproc),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(self.nproc),
            }
            err = (self.logs / f"rank{rank}.err").open("w")
            self.files.append(err)
            out: IO[str] | int = subprocess.PIPE
            if rank > 0:
                out = (self.logs / f"rank{rank}.out").open("w")
                self.files.append(out)
            self.procs.append(
                subprocess.Popen(
                    self.command, stdout=out, stderr=err, env=env, cwd=self.logs, text=True
                )
            )
            if rank == 0:
                assert self.procs[0].stdout is not None
                self.reader = threading.Thread(
                    target=_read_lines, args=(self.procs[0].stdout, self.lines), daemon=True
                )
                self.reader.start()

    def stop(self) -> None:
        """End every rank still running (politely, then not) and close their outputs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.reader is not None:
            self.reader.join(10)  # the pipe ends with rank 0
        for f in self.files:
            f.close()
        if self.procs and self.procs[0].stdout is not None:
            self.procs[0].stdout.close()
        if self.store is not None:  # closed only now that no rank needs it
            self.store[1].close()
            self.store = None

    def check(self, final: Progress | None) -> None:
        """TrainingFailed, with the failing rank's last output, unless every rank succeeded."""
        codes = [proc.returncode for proc in self.procs]
        if final is not None and final.phase != "failed" and not any(codes):
            return
        bad = _first_failed(codes)
        why = final.message if final is not None and final.phase == "failed" else ""
        detail = _tail(self.logs / f"rank{bad}.err") or _tail(self.logs / f"rank{bad}.out")
        raise TrainingFailed(
            f"distributed training failed (exit codes {codes})"
            + (f": {why}" if why else "")
            + (f"\nrank {bad}: {detail}" if detail else "")
        )


def _first_failed(codes: list[int | None]) -> int:
    """The rank to blame: the first that failed by itself, not one `stop` terminated because
    another had failed (rank 0 by default)."""
    failed = [r for r, code in enumerate(codes) if code]
    own = [r for r in failed if codes[r] != -signal.SIGTERM]
    return (own or failed or [0])[0]


def train_distributed(
    repo: Path,
    store_dir: Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    nproc: int = 2,
    on_progress: ProgressFn = _ignore,
) -> RunResult:
    """Train with `nproc` processes on this machine (DDP: gloo on CPUs, NCCL with one GPU per
    process) and return rank 0's result: the one bundle it published. `nproc` 1 trains in this
    process. Raises TrainingFailed when a process fails (the others are then stopped)."""
    train_config = train_config or TrainConfig()
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if nproc == 1:
        store = ModelStore(store_dir)
        return train_repository(repo, store, model_config, train_config, None, on_progress)
    resolve_device(train_config.device, nproc - 1)  # fails now when GPUs are too few
    config = json.dumps(
        {"model": asdict(model_config) if model_config else {}, "train": asdict(train_config)}
    )
    command = training_command(
        "--repo", str(repo), "--store", str(store_dir), "--nice", "0", "--config", config
    )
    with tempfile.TemporaryDirectory(prefix="completiond-ddp-") as tmp:
        ranks = _LocalRanks(command, nproc, Path(tmp))
        try:
            ranks.start()
            final = _follow(ranks.procs, ranks.lines, on_progress)
        finally:
            ranks.stop()
        ranks.check(final)
    assert final is not None
    on_progress(final)
    bundle = load_bundle(ModelStore(store_dir).bundles_dir / final.version)
    return RunResult(bundle, final.phase == "done", str(bundle.meta.get("reason", "")))


def _follow(
    procs: list[subprocess.Popen[str]], lines: queue.Queue[str | None], on_progress: ProgressFn
) -> Progress | None:
    """Relay rank 0's progress until every process ended or one failed; rank 0's final line."""
    final, eof = None, False
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        if line is None:
            eof = True
        elif line.strip():
            try:
                progress = Progress.from_json(line)
            except ValueError:
                progress = None  # not ours (a library printing): ignored
            if progress is not None and progress.phase in FINAL_PHASES:
                final = progress
            elif progress is not None:
                on_progress(progress)
        codes = [proc.poll() for proc in procs]
        if any(code not in (None, 0) for code in codes):
            return final  # one failed: the others would wait for it forever
        if eof and all(code == 0 for code in codes):
            return final


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)
