"""Training child process: `python -m completiond.training --repo R --store S --config JSON`.

The daemon starts this so that torch never loads in the serving process. Progress goes to stdout
as one JSON object per line (see progress.py); a failure is reported as a final "failed" line and
exit status 1. The process lowers its own priority so completions stay fast while it runs.

`--nproc N` trains with N processes on this machine (torch.distributed, see distributed.py).
Started by torchrun (or by such a run), i.e. with WORLD_SIZE > 1 in the environment, this process
is one rank of a distributed run: only rank 0 reports progress and publishes the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from completiond.core.bundle import ModelStore
from completiond.core.errors import CompletiondError
from completiond.core.progress import Progress

from .model import ModelConfig
from .train import TrainConfig


def _emit(progress: Progress) -> None:
    sys.stdout.write(progress.to_json() + "\n")
    sys.stdout.flush()


def _silent(_: Progress) -> None:
    pass


def _is_rank() -> bool:
    """Started as one rank of a distributed run."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m completiond.training")
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--config", default="{}", help='JSON: {"model": {...}, "train": {...}}')
    parser.add_argument("--nice", type=int, default=10, help="added to the process priority")
    parser.add_argument(
        "--nproc", type=int, default=1, help="training processes on this machine (default: 1)"
    )
    args = parser.parse_args(argv)
    os.umask(0o077)  # whatever a library writes here (temporary files too) is this user's only
    if args.nice:
        os.nice(args.nice)
    distributed = _is_rank()
    try:
        config = json.loads(args.config)
        model_config = ModelConfig(**config.get("model", {}))
        train_config = TrainConfig(**config.get("train", {}))
        if distributed:  # one rank of a job started by torchrun or train_distributed
            from .distributed import DistEnv, run_worker

            env = DistEnv.from_environ()
            report = _emit if env is not None and env.rank == 0 else _silent
            run_worker(args.repo, args.store, model_config, train_config, report, env)
        elif args.nproc > 1:
            from .distributed import train_distributed

            train_distributed(args.repo, args.store, model_config, train_config, args.nproc, _emit)
        else:
            from .run import train_repository  # imports torch: after the cheap argument checks

            train_repository(
                args.repo, ModelStore(args.store), model_config, train_config, None, _emit
            )
    except (CompletiondError, ValueError, TypeError, OSError) as exc:
        _emit(Progress("failed", message=str(exc)))
        return 1
    except RuntimeError as exc:  # torch.distributed errors (a peer died, a timeout)
        if not distributed:
            raise
        traceback.print_exc()
        _emit(Progress("failed", message=f"{type(exc).__name__}: {exc}"))
        return 1
    return 0


def _leave(code: int) -> None:
    """Exit a rank without the interpreter's teardown: its work is durable when main returns,
    and the teardown adds a second or more of garbage collection over torch's modules and the
    distributed backend's C++ destructors, which sometimes abort a rank that succeeded
    ("terminate called without an active exception", exit status -6)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    status = main()
    if _is_rank():
        _leave(status)
    sys.exit(status)
