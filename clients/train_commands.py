"""`completiond train`, and the foreground training `retrain` falls back to without a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from completiond.core.locations import default_store_dir, repo_root
from completiond.core.progress import ProgressBar

from .options import model_overrides


def cmd_train(args: argparse.Namespace) -> int:
    return train_foreground(
        repo_root(args.repo),
        args.store,
        args.minutes,
        model=model_overrides(args),
        threads=args.threads,
        seed=args.seed,
        warm_start=not args.full,
        device=args.device,
        nproc=args.nproc,
    )


def train_foreground(repo: Path, store: Path | None, minutes: float, **train: Any) -> int:
    """Train with a progress bar on standard error, then say what came of it."""
    # Torch loads only for the commands that train.
    from completiond.training.distributed import train_distributed
    from completiond.training.model import ModelConfig
    from completiond.training.train import TrainConfig

    model = train.pop("model", {})
    nproc = train.pop("nproc", 1)
    bar = ProgressBar(sys.stderr)
    store_dir = store or default_store_dir(repo)
    os.umask(0o077)  # the store holds the repository's text: this user's only
    result = train_distributed(
        repo,
        store_dir,
        ModelConfig(**model),
        TrainConfig(minutes=minutes, **train),
        nproc,
        bar.update,
    )
    meta = result.bundle.meta
    print(
        f"model {result.bundle.version}: {meta['val_bpc']:.3f} bits/char on "
        f"{meta['corpus']['val_files']} held-out files, {meta['parameters']:,} parameters, "
        f"in {result.bundle.directory}"
        + ("" if result.promoted else f"; kept aside, not better: {result.reason}")
    )
    return 0
