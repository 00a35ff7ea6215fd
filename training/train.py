"""The time-budgeted training loop: truncated BPTT over the corpus, early stopping on held-out
files, best weights kept.

The loop runs on the CPU or on a CUDA GPU (`TrainConfig.device`), alone or as one rank of a
torch.distributed job (see distributed.py): with a process group initialised it wraps the model
in DistributedDataParallel, rank 0 validates and decides, for every rank, when to stop.

The training ids come whole (`np.ndarray`, small corpora: unchanged behaviour) or as a
`StreamedText` read from the files in pieces, so that a large corpus trains in bounded memory.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from completiond.core.corpus import read_text
from completiond.core.errors import CorpusError, DeviceUnavailable
from completiond.core.progress import Progress
from completiond.core.tokenizer import CharTokenizer

from .model import CharLSTM

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    minutes: float = 5.0  # wall-clock budget of the whole run, export included
    seq_len: int = 128  # BPTT window; the state carries over between windows
    batch_size: int = 32  # parallel streams through the corpus (per process, on a CPU)
    lr: float = 3e-3  # peak AdamW learning rate, cosine-decayed over the budget
    weight_decay: float = 0.01
    clip_norm: float = 1.0  # LSTMs on code see rare exploding gradients (long repeated runs)
    # torch threads; 0 = all cores but one: threads on every core collapse (steps many times
    # slower) as soon as another process is busy, which a user's machine usually is. 1 beside a
    # daemon.
    threads: int = 0
    # Mixed precision: bf16 autocast where the CPU has native bf16 (faster, same loss);
    # on a GPU bf16 where its LSTM kernels take it, else fp16 with loss scaling.
    bf16: bool = True
    eval_interval_s: float = 20.0  # seconds of training between validations
    max_val_chars: int = 100_000  # validation cost stays bounded on large repositories
    patience: int = 6  # validations without improvement before stopping early
    warm_start: bool = True  # fine-tune the current model when architecture and alphabet fit
    int8: bool = True  # serve int8 weights when they cost < 1% bits/char (see export.py)
    max_steps: int = 0  # 0 = train until the budget; > 0 = exactly this many steps (tests)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when PyTorch sees a GPU, else the CPU), "cpu", "cuda"
    gpu_batch_size: int = 256  # streams per step (per process) on a GPU, instead of batch_size
    # Training text longer than this is read from its files in pieces while training, instead
    # of being encoded whole (8 bytes per character): memory stays bounded on any corpus.
    stream_above_chars: int = 20_000_000
    stream_piece_chars: int = 65_536  # characters read at a time per stream in that mode
    # Write the store's repository index: off when the daemon runs training, as it keeps the
    # index up to date itself with every saved file (daemon/live_index.py).
    index: bool = True
    # Lines of held-out files (per cursor mode) on which the run chooses whether the model is
    # served with the current file as its cache (training/file_cache_fit.py); 0: not chosen,
    # the daemon's default applies.
    cache_fit_lines: int = 100


@dataclass
class TrainResult:
    model: CharLSTM  # with the best validation weights loaded, on the CPU
    val_bpc: float  # measured by rank 0 (inf on the other ranks of a distributed run)
    steps: int
    chars_seen: int  # by all ranks together
    seconds: float
    device: str = "cpu"  # "cpu" or "cuda"
    device_name: str = ""  # the GPU's name on CUDA
    precision: str = "fp32"  # autocast dtype: "bf16", "fp16" (with loss scaling) or "fp32"
    world_size: int = 1  # processes that trained together
    replica_max_abs_diff: float = 0.0  # between the ranks' final weights (DDP keeps them equal)


ProgressFn = Callable[[Progress], None]


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """The torch device for `TrainConfig.device`; DeviceUnavailable for "cuda" without a GPU."""
    if choice not in DEVICES:
        raise ValueError(f"unknown training device {choice!r}: use one of {', '.join(DEVICES)}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceUnavailable(
            f"training on 'cuda' was requested but PyTorch sees no CUDA GPU (torch "
            f"{torch.__version__}, {build}); use --device cpu or --device auto"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DeviceUnavailable(
            f"process {local_rank} on this machine has no GPU of its own ({count} visible): "
            f"train with at most {count} processes per machine on GPUs, or use --device cpu"
        )
    return torch.device("cuda", local_rank)


def _bf16_supported() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def _cuda_amp_dtype(model: CharLSTM, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU runs the LSTM in it, else fp16 (with loss scaling), else None (fp32).
    Probed with one tiny forward and backward pass, since cuDNN's LSTM support varies."""
    candidates = [torch.bfloat16] if torch.cuda.is_bf16_supported() else []
    ids = torch.zeros(2, 3, dtype=torch.long, device=device)
    for dtype in [*candidates, torch.float16]:
        try:
            h, c = (t.to(device) for t in model.initial_state(2))
            with torch.autocast("cuda", dtype=dtype):
                logits, _, _ = model(ids, h, c)
            logits.float().sum().backward()
            torch.cuda.synchronize(device)
        except RuntimeError:
            continue
        finally:
            model.zero_grad(set_to_none=True)
        return dtype
    return None


def _streams(ids: np.ndarray, batch: int) -> torch.Tensor:
    """Cut the id sequence into `batch` contiguous rows [batch, n]."""
    n = len(ids) // batch
    return torch.from_numpy(ids[: n * batch].reshape(batch, n).copy())


# --- Streaming data path: the training files read in pieces, never encoded whole -------------


def read_training_texts(root: Path, files: Sequence[str]) -> Iterator[str]:
    """The files' texts as the corpus has them (normalised, secrets masked), one at a time;
    files that vanished or became unreadable since selection are skipped."""
    for rel in files:
        text = read_text(root, rel)
        if text is not None:
            yield text


@dataclass
class StreamedText:
    """Training text that is read from its files while training, in pieces of at most
    `piece_chars` characters, in a new random file order on every pass. Memory is one file's
    text plus one piece per stream, whatever the size of the corpus."""

    root: Path
    files: Sequence[str]
    tokenizer: CharTokenizer
    chars: int  # about how many characters a pass reads (sizes the batch on small shards)
    piece_chars: int = 65_536

    def __len__(self) -> int:
        return self.chars

    def pieces(self, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        """One pass: ids as uint8 (int32 beyond 256 symbols) arrays of <= piece_chars."""
        dtype = np.uint8 if self.tokenizer.vocab_size <= 256 else np.int32
        order = rng.permutation(len(self.files)) if rng is not None else range(len(self.files))
        texts = read_training_texts(self.root, [self.files[i] for i in order])
        for text in texts:
            for i in range(0, len(text), self.piece_chars):
                yield self.tokenizer.encode(text[i : i + self.piece_chars]).astype(dtype)


def stream_windows(
    data: StreamedText, batch: int, seq_len: int, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Endless int64 windows [batch, seq_len + 1] (inputs are [:, :-1], targets [:, 1:]).

    Each of the `batch` streams reads its own pieces one after the other, as one contiguous
    text, and takes the next piece of the pass when it runs dry: the same as cutting the whole
    concatenated text into contiguous streams, without ever holding it."""

    def forever() -> Iterator[np.ndarray]:
        while True:
            empty = True
            for piece in data.pieces(rng):
                if len(piece):
                    empty = False
                    yield piece
            if empty:
                raise CorpusError("the training files can no longer be read")

    source = forever()
    buffers = [np.zeros(0, np.uint8) for _ in range(batch)]
    while True:
        window = np.empty((batch, seq_len + 1), np.int64)
        for b in range(batch):
            buf = buffers[b]
            while len(buf) < seq_len + 1:
                buf = np.concatenate([buf, next(source)])
            window[b] = buf[: seq_len + 1]
            buffers[b] = buf[seq_len:]  # the last target is the next window's first input
        yield window


TrainData = np.ndarray | StreamedText
Window = tuple[torch.Tensor, torch.Tensor, bool]  # inputs [B,T], targets [B,T], fresh streams


def _array_windows(
    ids: np.ndarray, batch: int, seq_len: int, rng: np.random.Generator
) -> Iterator[Window]:
    while True:
        # A fresh random offset per pass, so windows do not always start at the same places.
        max_offset = max(1, min(seq_len, len(ids) - 1 - batch * seq_len))
        offset = int(rng.integers(0, max_offset))
        x_all = _streams(ids[offset:-1], batch)  # [B,N]
        y_all = _streams(ids[offset + 1 :], batch)
        for t in range(0, x_all.shape[1] - seq_len + 1, seq_len):
            yield x_all[:, t : t + seq_len], y_all[:, t : t + seq_len], t == 0


def _streamed_windows(
    data: StreamedText, batch: int, seq_len: int, rng: np.random.Generator
) -> Iterator[Window]:
    fresh = True
    for window in stream_windows(data, batch, seq_len, rng):
        ids = torch.from_numpy(window)
        yield ids[:, :-1], ids[:, 1:], fresh
        fresh = False


@torch.no_grad()
def evaluate_bpc(model: CharLSTM, ids: np.ndarray, chunk: int = 256) -> float:
    """Bits per character of `ids`, reading them as up to 16 contiguous streams with state."""
    model.eval()
    device = next(model.parameters()).device
    batch = max(1, min(16, (len(ids) - 1) // chunk))
    x_all = _streams(ids[:-1], batch).to(device)
    y_all = _streams(ids[1:], batch).to(device)
    h, c = (t.to(device) for t in model.initial_state(batch))
    total, count = 0.0, 0
    for t in range(0, x_all.shape[1], chunk):
        x, y = x_all[:, t : t + chunk], y_all[:, t : t + chunk]  # [B,T]
        logits, h, c = model(x, h, c)  # [B,T,V]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train()
    return total / max(1, count) / math.log(2)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) of the process group this process is in, or (0, 1, 0)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return 0, 1, 0
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def train(
    model: CharLSTM,
    train_ids: TrainData,
    val_ids: np.ndarray,
    config: TrainConfig,
    deadline: float,
    on_progress: ProgressFn,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> TrainResult:
    """Train until `deadline` (time.monotonic) or `max_steps`; return the best-validation model.

    `progress_span` is the part of the whole run's progress bar this loop fills. Inside a
    torch.distributed process group every rank calls this with its own shard of the training
    data; rank 0's `val_ids`, clock and early stopping decide for all of them."""
    rank, world, local_rank = _distributed()
    device = resolve_device(config.device, local_rank)
    torch.manual_seed(config.seed + rank)
    rng = np.random.default_rng(config.seed + rank)
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 2) - 1))
    model.to(device)
    on_gpu = device.type == "cuda"
    amp_dtype = _amp_dtype(model, device, config)
    seq_len, batch = _window_shape(config, len(train_ids), on_gpu)
    val_ids = val_ids[: config.max_val_chars] if rank == 0 else val_ids[:0]
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if on_gpu else None)
    step_fn = _Stepper(model, net, config, device, amp_dtype)
    clock = _Clock(config, time.monotonic(), deadline)
    best = _Best(copy.deepcopy(model.state_dict()))
    agreement = _Agreement(device) if world > 1 else None
    if isinstance(train_ids, StreamedText):
        windows = _streamed_windows(train_ids, batch, seq_len, rng)
    else:
        windows = _array_windows(train_ids, batch, seq_len, rng)
    step, chars, last_eval, last_report, shared_frac = 0, 0, clock.start, 0.0, 0.0
    h = c = torch.zeros(0)
    model.train()
    for x, y, fresh in windows:
        if fresh:
            h, c = (t.to(device) for t in model.initial_state(batch))
        frac = shared_frac if agreement else clock.fraction(step)
        h, c = step_fn.step(x, y, h, c, _lr_scale(step, frac))
        step += 1
        chars += x.numel()
        now = time.monotonic()
        finished = clock.fraction(step) >= 1.0
        if rank == 0 and (finished or now - last_eval >= config.eval_interval_s):
            bpc = evaluate_bpc(model, val_ids)
            last_eval = time.monotonic()  # the interval runs between evaluations, not over them
            finished = best.judge(model, bpc, config.patience) or finished
        if agreement is not None:
            finished, shared_frac, step_chars = agreement.share(
                rank == 0, finished, clock.fraction(step), x.numel()
            )
            chars += step_chars - x.numel()
        if rank == 0 and (finished or now - last_report >= 1.0):
            last_report = now
            on_progress(clock.progress(now, step, chars, best.bpc, world, progress_span))
        if finished:
            break
    seconds = time.monotonic() - clock.start
    replica_diff = _replica_max_abs_diff(model) if world > 1 else 0.0
    model.load_state_dict(best.state)
    model.to("cpu")  # export, parity and scoring run on the CPU
    model.eval()
    return TrainResult(
        model,
        best.bpc,
        step,
        chars,
        seconds,
        device=device.type,
        device_name=torch.cuda.get_device_name(device) if on_gpu else "",
        precision={torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[amp_dtype],
        world_size=world,
        replica_max_abs_diff=replica_diff,
    )


def _amp_dtype(model: CharLSTM, device: torch.device, config: TrainConfig) -> torch.dtype | None:
    """The autocast precision, or None for fp32."""
    if device.type == "cuda":
        return _cuda_amp_dtype(model, device) if config.bf16 else None
    return torch.bfloat16 if config.bf16 and _bf16_supported() else None


def _window_shape(config: TrainConfig, chars: int, on_gpu: bool) -> tuple[int, int]:
    """(sequence length, batch), shrunk so a small corpus still fills one batch."""
    seq_len = max(1, min(config.seq_len, chars // 2 - 1))
    wanted_batch = config.gpu_batch_size if on_gpu else config.batch_size
    return seq_len, max(1, min(wanted_batch, (chars - 1) // (seq_len + 1)))


def _lr_scale(step: int, fraction: float) -> float:
    """Linear warm-up over 50 steps, then a cosine from 1 down to 0.1 over the budget."""
    return min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction)))


class _Stepper:
    """One optimiser step with truncated backpropagation through time."""

    def __init__(
        self,
        model: CharLSTM,
        net: nn.Module,
        config: TrainConfig,
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.model, self.net, self.config, self.device = model, net, config, device
        self.amp_dtype = amp_dtype
        self.autocast_dtype = amp_dtype or (
            torch.float16 if device.type == "cuda" else torch.bfloat16
        )
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )

    def step(
        self, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor, lr_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Learn from one batch of windows; returns the state to carry into the next."""
        for group in self.opt.param_groups:
            group["lr"] = self.config.lr * lr_scale
        x = x.to(self.device, non_blocking=True)  # [B,T]
        y = y.to(self.device, non_blocking=True)  # [B,T]
        enabled = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            logits, h, c = self.net(x, h, c)  # [B,T,V]
        loss = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)
        )
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
            self.opt.step()
        return h.detach().float(), c.detach().float()  # truncate BPTT, keep the state


@dataclass
class _Clock:
    """How far the run is: by steps when `max_steps` is set, else by the time budget."""

    config: TrainConfig
    start: float
    deadline: float

    def fraction(self, step: int) -> float:
        if self.config.max_steps:
            return min(1.0, step / self.config.max_steps)
        budget = max(1e-3, self.deadline - self.start)
        return min(1.0, (time.monotonic() - self.start) / budget)

    def progress(
        self, now: float, step: int, chars: int, bpc: float, world: int, span: tuple[float, float]
    ) -> Progress:
        lo, hi = span
        return Progress(
            "training",
            fraction=lo + (hi - lo) * self.fraction(step),
            eta_s=max(0.0, self.deadline - now),
            val_bpc=0.0 if math.isinf(bpc) else bpc,
            message=f"step {step}, {chars / max(1e-9, now - self.start):,.0f} chars/s"
            + (f" on {world} processes" if world > 1 else ""),
        )


@dataclass
class _Best:
    """Early stopping: the best validation score's weights, and evaluations since it."""

    state: dict[str, torch.Tensor]
    bpc: float = math.inf
    bad_evals: int = 0

    def judge(self, model: CharLSTM, bpc: float, patience: int) -> bool:
        """Record one validation; True when it is time to stop."""
        if bpc < self.bpc - 1e-4:
            self.bpc, self.state, self.bad_evals = bpc, copy.deepcopy(model.state_dict()), 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= patience


class _Agreement:
    """Rank 0's clock and validations decide (the others add zeros): every rank takes the same
    learning rate and stops after the same step, as each step's gradient all-reduce needs. The
    sum of the ranks' characters comes with it."""

    def __init__(self, device: torch.device) -> None:
        self.control = torch.zeros(3, dtype=torch.float64, device=device)  # [stop, frac, chars]

    def share(
        self, decides: bool, finished: bool, fraction: float, chars: int
    ) -> tuple[bool, float, int]:
        """(stop, shared fraction, characters of all ranks) for this step."""
        if decides:
            self.control[0], self.control[1] = float(finished), fraction
        self.control[2] = chars
        torch.distributed.all_reduce(self.control)
        stop, shared_frac, step_chars = self.control.tolist()
        self.control.zero_()
        return stop > 0.5, shared_frac, int(step_chars)


def _replica_max_abs_diff(model: CharLSTM) -> float:
    """Largest difference between any rank's weights and rank 0's, seen from every rank."""
    flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)
