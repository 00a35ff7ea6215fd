"""`completiond train`, the foreground training `retrain` falls back to without a daemon, and
`completiond pretrain` (a language's base model)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from completiond.core.discovery import bases_dir, discover_roots, language_of
from completiond.core.files import select_files
from completiond.core.locations import default_store_dir, repo_root
from completiond.core.progress import Progress, ProgressBar

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


PRETRAIN_NICENESS = 10  # a base takes an hour of CPU: the user's own work comes first


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Build the base of one language, at low priority, with a progress bar."""
    from completiond.training.model import ModelConfig
    from completiond.training.pretrain import pretrain
    from completiond.training.train import TrainConfig

    repo = repo_root(args.repo)
    language = args.language or language_of(select_files(repo).files) or "python"
    roots = args.sources or discover_roots(language)
    if not roots:
        print(f"completiond: no installed {language} code found; use --from DIR", file=sys.stderr)
        return 1
    os.nice(PRETRAIN_NICENESS)
    os.umask(0o077)  # the base holds code the model can replay: this user's only
    report = _json_line if args.json_progress else ProgressBar(sys.stderr).update
    result = pretrain(
        language,
        list(roots),
        bases_dir() / language,
        repo,
        ModelConfig(**model_overrides(args)),
        TrainConfig(minutes=args.minutes, threads=args.threads, seed=args.seed, device=args.device),
        args.checkpoint_minutes * 60,
        report,
    )
    meta = result.meta
    print(
        f"{language} base: {meta['val_bpc']:.3f} bits/char on {meta['val_files']} held-out files, "
        f"{meta['train_files']} training files ({meta['chars']:,} chars), "
        f"{meta['seconds'] / 60:.1f} min{' (resumed)' if result.resumed else ''}, "
        f"in {result.directory}",
        file=sys.stderr if args.json_progress else sys.stdout,  # stdout: JSON lines only
    )
    return 0


def _json_line(progress: Progress) -> None:
    print(progress.to_json(), flush=True)
