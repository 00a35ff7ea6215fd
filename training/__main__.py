"""Training child process: `python -m completiond.training --repo R --store S --config JSON`.

The daemon starts this so that torch never loads in the serving process. Progress goes to stdout
as one JSON object per line (see progress.py); a failure is reported as a final "failed" line and
exit status 1. The process lowers its own priority so completions stay fast while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from completiond.errors import CompletiondError

from .bundle import ModelStore
from .model import ModelConfig
from .progress import Progress
from .train import TrainConfig


def _emit(progress: Progress) -> None:
    sys.stdout.write(progress.to_json() + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m completiond.training")
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--config", default="{}", help='JSON: {"model": {...}, "train": {...}}')
    parser.add_argument("--nice", type=int, default=10, help="added to the process priority")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    try:
        config = json.loads(args.config)
        model_config = ModelConfig(**config.get("model", {}))
        train_config = TrainConfig(**config.get("train", {}))
        from .run import train_repository  # imports torch: after the cheap argument checks

        train_repository(args.repo, ModelStore(args.store), model_config, train_config, None, _emit)
    except (CompletiondError, ValueError, TypeError, OSError) as exc:
        _emit(Progress("failed", message=str(exc)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
