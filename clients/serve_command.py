"""`completiond serve`: the daemon in the foreground, configured from the command line."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from completiond.core.errors import InvalidRequest
from completiond.core.locations import repo_root

from .options import decoder_config, model_overrides, retrieval_config

if TYPE_CHECKING:
    from completiond.daemon.server import ServerConfig


def cmd_serve(args: argparse.Namespace) -> int:
    # The daemon loads onnxruntime and gRPC's server: only for this command.
    from completiond.daemon.daemon import Daemon, DaemonConfig
    from completiond.daemon.idle_base import IdleBaseConfig
    from completiond.daemon.trainer import TrainerConfig
    from completiond.daemon.watcher import WatchConfig

    tls = _serve_tls(args)  # checked before a token file is written
    _check_pretrain_sources(args)
    config = DaemonConfig(
        repo=repo_root(args.repo),
        store=args.store,
        first_train_minutes=args.minutes,
        retrieval=retrieval_config(args),
        decoder=decoder_config(args),
        server=_server_config(args, tls),
        trainer=TrainerConfig(
            minutes=args.retrain_minutes,
            model=model_overrides(args),
            train={"device": args.device},
        ),
        watch=WatchConfig(
            enabled=not args.no_watch,
            quiet_s=args.watch_quiet,
            min_interval_s=args.watch_interval,
        ),
        idle_base=IdleBaseConfig(
            enabled=args.pretrain_when_idle, sources=list(args.pretrain_sources or [])
        ),
        idle_exit_minutes=_idle_exit(args.idle_exit),
        started_by=args.started_by,
    )
    return Daemon(config).serve_forever(sys.stderr)


def _check_pretrain_sources(args: argparse.Namespace) -> None:
    """--pretrain-from is checked at start, not an hour of quiet periods later."""
    sources = args.pretrain_sources or []
    if sources and not args.pretrain_when_idle:
        raise InvalidRequest("--pretrain-from goes with --pretrain-when-idle")
    missing = [str(d) for d in sources if not d.is_dir()]
    if missing:
        raise InvalidRequest(f"--pretrain-from: not a directory: {', '.join(missing)}")


def _idle_exit(minutes: float | None) -> float | None:
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise InvalidRequest(f"--idle-exit wants a positive number of minutes, got {minutes}")
    return minutes


def _server_config(args: argparse.Namespace, tls: tuple[bytes, bytes] | None) -> ServerConfig:
    """Where the daemon listens and who may call it; missing token files are written here."""
    from completiond.daemon.server import ServerConfig

    return ServerConfig(
        socket_path=args.socket,
        listen=args.listen,
        max_workers=args.workers,
        allow_remote=args.allow_remote,
        token=_serve_token(args.token_file, "token"),
        completion_token=_serve_token(args.completion_token_file, "completion-only token"),
        tls=tls,
        insecure_remote=args.insecure_remote,
        metrics_port=args.metrics_port,
    )


def _serve_token(path: Path | None, what: str) -> str | None:
    """The token in `path`; a missing file gets a fresh one first, and the user is told where."""
    from completiond.daemon.access import create_token, read_token

    if path is None:
        return None
    if not path.exists():
        create_token(path)
        print(
            f"completiond: wrote a new {what} to {path}; clients pass --token-file {path}",
            file=sys.stderr,
            flush=True,
        )
    return read_token(path)


def _serve_tls(args: argparse.Namespace) -> tuple[bytes, bytes] | None:
    from completiond.daemon.access import read_tls_key_pair

    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise InvalidRequest("--tls-cert and --tls-key go together")
    return read_tls_key_pair(args.tls_cert, args.tls_key)
