"""The time-budgeted training loop: truncated BPTT over the corpus, early stopping on held-out
files, best weights kept."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .model import CharLSTM
from .progress import Progress


@dataclass
class TrainConfig:
    minutes: float = 5.0  # wall-clock budget of the whole run, export included
    seq_len: int = 128  # BPTT window; the state carries over between windows
    batch_size: int = 32  # parallel streams through the corpus
    lr: float = 3e-3  # peak AdamW learning rate, cosine-decayed over the budget
    weight_decay: float = 0.01
    clip_norm: float = 1.0  # LSTMs on code see rare exploding gradients (long repeated runs)
    threads: int = 0  # torch threads; 0 = all cores. Use 1 beside a busy daemon.
    bf16: bool = True  # autocast where the CPU has native bf16 (1.7-1.9x faster, same loss)
    eval_interval_s: float = 20.0  # seconds of training between validations
    max_val_chars: int = 100_000  # validation cost stays bounded on large repositories
    patience: int = 6  # validations without improvement before stopping early
    warm_start: bool = True  # fine-tune the current model when architecture and alphabet fit
    int8: bool = True  # serve int8 weights when they cost < 1% bits/char (see export.py)
    max_steps: int = 0  # 0 = train until the budget; > 0 = exactly this many steps (tests)
    seed: int = 0


@dataclass
class TrainResult:
    model: CharLSTM  # with the best validation weights loaded
    val_bpc: float
    steps: int
    chars_seen: int
    seconds: float


ProgressFn = Callable[[Progress], None]


def _bf16_supported() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def _streams(ids: np.ndarray, batch: int) -> torch.Tensor:
    """Cut the id sequence into `batch` contiguous rows [batch, n]."""
    n = len(ids) // batch
    return torch.from_numpy(ids[: n * batch].reshape(batch, n).copy())


@torch.no_grad()
def evaluate_bpc(model: CharLSTM, ids: np.ndarray, chunk: int = 256) -> float:
    """Bits per character of `ids`, reading them as up to 16 contiguous streams with state."""
    model.eval()
    batch = max(1, min(16, (len(ids) - 1) // chunk))
    x_all = _streams(ids[:-1], batch)
    y_all = _streams(ids[1:], batch)
    h, c = model.initial_state(batch)
    total, count = 0.0, 0
    for t in range(0, x_all.shape[1], chunk):
        x, y = x_all[:, t : t + chunk], y_all[:, t : t + chunk]  # [B,T]
        logits, h, c = model(x, h, c)  # [B,T,V]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train()
    return total / max(1, count) / math.log(2)


def train(
    model: CharLSTM,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    config: TrainConfig,
    deadline: float,
    on_progress: ProgressFn,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> TrainResult:
    """Train until `deadline` (time.monotonic) or `max_steps`; return the best-validation model.

    `progress_span` is the part of the whole run's progress bar this loop fills."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    use_bf16 = config.bf16 and _bf16_supported()
    seq_len = max(1, min(config.seq_len, len(train_ids) // 2 - 1))
    batch = max(1, min(config.batch_size, (len(train_ids) - 1) // (seq_len + 1)))
    val_ids = val_ids[: config.max_val_chars]

    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = time.monotonic()
    budget = max(1e-3, deadline - start)
    lo, hi = progress_span

    def fraction_done(step: int) -> float:
        if config.max_steps:
            return min(1.0, step / config.max_steps)
        return min(1.0, (time.monotonic() - start) / budget)

    best_bpc, best_state, bad_evals = math.inf, copy.deepcopy(model.state_dict()), 0
    step, chars, last_eval, last_report = 0, 0, start, 0.0
    model.train()
    while True:
        # A fresh random offset per pass, so windows do not always start at the same places.
        max_offset = max(1, min(seq_len, len(train_ids) - 1 - batch * seq_len))
        offset = int(rng.integers(0, max_offset))
        x_all = _streams(train_ids[offset:-1], batch)  # [B,N]
        y_all = _streams(train_ids[offset + 1 :], batch)
        h, c = model.initial_state(batch)
        for t in range(0, x_all.shape[1] - seq_len + 1, seq_len):
            frac = fraction_done(step)
            lr_scale = min(1.0, (step + 1) / 50) * (
                0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))
            )
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_scale
            x, y = x_all[:, t : t + seq_len], y_all[:, t : t + seq_len]  # [B,T]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits, h, c = model(x, h, c)  # [B,T,V]
            loss = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            opt.step()
            h, c = h.detach().float(), c.detach().float()  # truncate BPTT, keep the state
            step += 1
            chars += x.numel()
            now = time.monotonic()
            finished = fraction_done(step) >= 1.0
            if finished or now - last_eval >= config.eval_interval_s:
                bpc = evaluate_bpc(model, val_ids)
                last_eval = time.monotonic()
                if bpc < best_bpc - 1e-4:
                    best_bpc, best_state, bad_evals = bpc, copy.deepcopy(model.state_dict()), 0
                else:
                    bad_evals += 1
                finished = finished or bad_evals >= config.patience
            if finished or now - last_report >= 1.0:
                last_report = now
                frac = fraction_done(step)
                on_progress(
                    Progress(
                        "training",
                        fraction=lo + (hi - lo) * frac,
                        eta_s=max(0.0, deadline - now),
                        val_bpc=0.0 if math.isinf(best_bpc) else best_bpc,
                        message=f"step {step}, {chars / max(1e-9, now - start):,.0f} chars/s",
                    )
                )
            if finished:
                model.load_state_dict(best_state)
                model.eval()
                return TrainResult(model, best_bpc, step, chars, time.monotonic() - start)
