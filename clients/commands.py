"""The commands that ask a running daemon (complete, status, retrain, rollback), falling back to
the model store where one can do without it; eval, lsp and shell-init."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from completiond.completion.file_cache import META_KEY as FILE_CACHE_META
from completiond.core.bundle import ModelStore
from completiond.core.discovery import bases_dir, list_bases
from completiond.core.errors import BundleError, DaemonUnreachable
from completiond.core.locations import default_store_dir, repo_root
from completiond.core.progress import Progress, ProgressBar

from .client import Client, connection
from .options import decoder_config, retrieval_config
from .render import print_status
from .shell import snippet
from .train_commands import train_foreground


def _client(args: argparse.Namespace, timeout_s: float = 10.0) -> Client:
    """The client for the daemon the arguments point at (DaemonUnreachable if none runs)."""
    return connection(args).client(timeout_s)


def cmd_complete(args: argparse.Namespace) -> int:
    prefix = sys.stdin.read() if args.prefix == "-" else args.prefix
    with _client(args, args.timeout) as client:
        response = client.complete(
            prefix,
            suffix=args.suffix,
            path=args.path,
            n=args.n,
            max_chars=args.max_chars,
            temperature=args.temperature,
            min_confidence=args.min_confidence,
        )
    if args.json:
        print(json.dumps(MessageToDict(response, always_print_fields_with_no_presence=True)))
    elif response.candidates:
        print(response.candidates[0].text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            status = MessageToDict(client.status(), always_print_fields_with_no_presence=True)
    except DaemonUnreachable:
        status = _offline_status(args)
    status.update(_local_status(Path(status["store"])))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return 0


def _local_status(store: Path) -> dict[str, Any]:
    """The bases in this user's cache, the one the current model descends from and whether it
    is served with the file cache (read here, not from the daemon: all are files of this
    machine)."""
    bases = {
        language: {
            "manifestSha256": meta["manifest_sha256"],
            "valBpc": meta["val_bpc"],
            "files": meta["train_files"] + meta["val_files"],
            "minutes": meta["seconds"] / 60,
            "createdUnix": meta["created_unix"],
        }
        for language, meta in list_bases().items()
    }
    try:
        model = ModelStore(store).current().meta if store.is_dir() else {}
    except BundleError:
        model = {}
    return {
        "basesDir": str(bases_dir()),
        "bases": bases,
        "modelBase": model.get("base"),
        "modelFileCache": model.get(FILE_CACHE_META),
    }


def _offline_status(args: argparse.Namespace) -> dict[str, Any]:
    """What the store says when no daemon runs, in the daemon's status fields."""
    repo = repo_root(args.repo)
    store = ModelStore(args.store or default_store_dir(repo))
    status: dict[str, Any] = {
        "repo": str(repo),
        "store": str(store.root),
        "listenAddress": "",
        "versions": store.versions(),
    }
    if store.current_version() is not None:
        meta = store.current().meta
        corpus = meta.get("corpus", {})
        status["model"] = {
            "version": meta["version"],
            "createdUnix": meta["created_unix"],
            "parameters": meta["parameters"],
            "valBpc": meta["val_bpc"],
            "trainFiles": corpus.get("train_files", 0),
            "trainChars": corpus.get("train_chars", 0),
            "valFiles": corpus.get("val_files", 0),
            "commit": corpus.get("commit", ""),
        }
    return status


def cmd_retrain(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
    except DaemonUnreachable:
        print("completiond: no daemon is running; training in the foreground", file=sys.stderr)
        return train_foreground(
            repo_root(args.repo), args.store, args.minutes or 5.0, warm_start=not args.full
        )
    bar = ProgressBar(sys.stderr)
    last = None
    with client:
        for p in client.retrain(args.minutes, full=args.full):
            last = Progress(
                p.phase, p.fraction, p.eta_seconds, p.val_bpc, p.message, p.model_version
            )
            bar.update(last)
    return 0 if last is not None and last.phase in ("done", "rejected") else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
    except DaemonUnreachable:
        from completiond.daemon.model_slot import ModelSlot  # no daemon: switch the store only

        store = ModelStore(args.store or default_store_dir(repo_root(args.repo)))
        version = ModelSlot(store).rollback(args.version).version
    else:
        with client:
            version = client.rollback(args.version).version
    print(f"serving model {version}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from completiond.evaluation.evaluate import EvalConfig, run_eval

    repo = repo_root(args.repo)
    config = EvalConfig(
        queries=args.queries,
        modes=(args.mode,) if args.mode else EvalConfig.modes,
        seed=args.seed,
        typed_chars=args.typed_chars,
        min_confidence=args.min_confidence,
        replay_lines=args.replay_lines,
        accept_rate=args.accept_rate,
    )
    report = run_eval(
        repo,
        args.store or default_store_dir(repo),
        config,
        args.report,
        retrieval_config(args),
        decoder_config(args),
    )
    print(json.dumps(report.summary(), indent=2) if args.json else report.to_markdown())
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    from .lsp import main as lsp_main  # pygls loads only for the language server

    return lsp_main(args.lsp_args)


def cmd_shell_init(args: argparse.Namespace) -> int:
    print(snippet(args.shell), end="")
    return 0
