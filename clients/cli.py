"""`completiond`: the command line. Every subcommand's options are documented in README.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.json_format import MessageToDict

from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import ModelStore
from completiond.core.errors import CompletiondError, DaemonUnreachable, InvalidRequest
from completiond.core.locations import default_store_dir, repo_root
from completiond.core.progress import Progress, ProgressBar
from completiond.core.version import __version__

if TYPE_CHECKING:
    from completiond.daemon.decoder import DecoderConfig

from .client import Client, add_connection_options, add_repo_option, connection
from .shell import SHELLS, snippet


def _add_serve_address(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--socket", type=Path, help="Unix socket to serve on (default: derived from the repo)"
    )
    group.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve TCP instead, on a loopback address unless --allow-remote (needs --token-file)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="every call must carry the token in F (needed with --listen); a missing F is "
        "created with a fresh token, mode 600",
    )
    p.add_argument(
        "--completion-token-file",
        type=Path,
        metavar="F",
        help="a second token, created like --token-file's, that may only ask for completions "
        "(Complete, Warm, Feedback, health): not status, retrain or rollback",
    )
    p.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve --listen over TLS with this certificate"
    )
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="and this private key (mode 600)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen on a non-loopback address (with TLS unless --insecure-remote)",
    )
    p.add_argument(
        "--insecure-remote",
        action="store_true",
        help="with --allow-remote: serve without TLS, when something else encrypts the link "
        "(an SSH tunnel, a VPN)",
    )


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        type=Path,
        help="model store directory (default: $XDG_CACHE_HOME/completiond/<repo>)",
    )


def _add_model(p: argparse.ArgumentParser, minutes: float, what: str) -> None:
    p.add_argument("--minutes", type=float, default=minutes, help=f"{what} (default: {minutes:g})")
    p.add_argument("--hidden-size", type=int, help="LSTM units per layer (default: 256)")
    p.add_argument("--layers", type=int, help="LSTM layers (default: 1)")


def _client(args: argparse.Namespace, timeout_s: float = 10.0) -> Client:
    """The client for the daemon the arguments point at (DaemonUnreachable if none runs)."""
    return connection(args).client(timeout_s)


def _add_device(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help=f"{what} (default: auto, the GPU when PyTorch sees one)",
    )


def _add_retrieval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-retrieval",
        action="store_true",
        help="complete with the model alone (no lines copied from the repository or the file)",
    )
    p.add_argument(
        "--model-below",
        type=float,
        default=RetrievalConfig.model_below,
        metavar="CONF",
        help="run the model too when the best copied line's confidence is below CONF "
        f"(default: {RetrievalConfig.model_below:g}; 0: only when nothing is found; "
        "above 1: always)",
    )
    p.add_argument(
        "--start-below",
        type=float,
        default=RetrievalConfig.start_below,
        metavar="CONF",
        help="when no candidate is this confident (or as confident as the request's "
        "min_confidence, when higher), offer the model's likeliest next characters (cut where "
        "probability x characters saved is largest) first if they are expected to save more "
        f"keystrokes (default: {RetrievalConfig.start_below:g}; 0: never; higher trades exact "
        "whole lines for keystrokes)",
    )


def _add_typed_through(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-typed-through",
        action="store_true",
        help="offer a suggestion again whole after you typed along it without accepting it "
        "(default: one less confident than 0.35 comes back as its first word only, the end of "
        "the name you are typing; per document; editors at their 0.6 threshold see no change)",
    )


def _decoder(args: argparse.Namespace) -> DecoderConfig:
    from completiond.daemon.decoder import DecoderConfig  # onnxruntime loads only when needed

    return DecoderConfig(declined_below=0.0) if args.keep_typed_through else DecoderConfig()


def _retrieval(args: argparse.Namespace) -> RetrievalConfig:
    return RetrievalConfig(
        enabled=not args.no_retrieval, model_below=args.model_below, start_below=args.start_below
    )


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {"hidden_size": args.hidden_size, "num_layers": args.layers}
    return {k: v for k, v in overrides.items() if v is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="completiond",
        description="Code completions from a small model trained on your repository.",
    )
    parser.add_argument("--version", action="version", version=f"completiond {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the daemon does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve completions (training a first model if needed)")
    add_repo_option(p)
    _add_store(p)
    _add_serve_address(p)
    _add_model(p, 0.75, "budget of the quick first model of a fresh repository, in minutes")
    p.add_argument("--workers", type=int, default=8, help="requests served at once (default: 8)")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (0 picks a port)",
    )
    p.add_argument(
        "--retrain-minutes",
        type=float,
        default=5.0,
        help="budget of background retrains (after the first model, on changes: less for a "
        "small change, `retrain`), in minutes (default: 5)",
    )
    _add_device(p, "device of the training runs")
    _add_retrieval(p)
    _add_typed_through(p)
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="do not follow saved files (index updated at start and after training runs only; "
        "no retrain on changes)",
    )
    p.add_argument(
        "--watch-quiet",
        type=float,
        default=20.0,
        metavar="S",
        help="retrain once files stopped changing for S seconds (default: 20)",
    )
    p.add_argument(
        "--watch-interval",
        type=float,
        default=300.0,
        metavar="S",
        help="and at most once every S seconds (default: 300)",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("train", help="train a model in the foreground (no daemon needed)")
    add_repo_option(p)
    _add_store(p)
    _add_model(p, 5.0, "training budget, in minutes")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: all cores but one)"
    )
    _add_device(p, "train on the CPU or a CUDA GPU")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="training processes on this machine (torch.distributed DDP; default: 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--full", action="store_true", help="train from scratch instead of fine-tuning")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("complete", help="complete one line (prints the completion alone)")
    p.add_argument("prefix", help="text before the cursor; '-' reads it from standard input")
    p.add_argument("--suffix", default="", help="text after the cursor")
    p.add_argument("--path", default="", help="file being edited (a language hint, never read)")
    p.add_argument("-n", type=int, default=1, help="number of candidates (default: 1, max 16)")
    p.add_argument("--max-chars", type=int, default=0, help="longest completion (default: 80)")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 = deterministic (default); > 0 samples"
    )
    p.add_argument(
        "--min-confidence", type=float, default=0.0, help="hide candidates below this (0..1)"
    )
    p.add_argument("--json", action="store_true", help="print all candidates as JSON")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    add_connection_options(p)
    p.set_defaults(run=cmd_complete)

    p = sub.add_parser("status", help="show the model, training state and request counts")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    add_connection_options(p)
    _add_store(p)
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("retrain", help="retrain now (through the daemon, else in the foreground)")
    p.add_argument(
        "--minutes", type=float, default=0.0, help="training budget (default: the daemon's)"
    )
    p.add_argument("--full", action="store_true", help="train from scratch instead of fine-tuning")
    add_connection_options(p)
    _add_store(p)
    p.set_defaults(run=cmd_retrain)

    p = sub.add_parser("rollback", help="serve an earlier model again (default: the previous)")
    p.add_argument("version", nargs="?", default="", help="bundle version (see `status`)")
    add_connection_options(p)
    _add_store(p)
    p.set_defaults(run=cmd_rollback)

    p = sub.add_parser("eval", help="measure completion quality on the repository's held-out files")
    p.add_argument("--queries", type=int, default=500, help="held-out lines asked (default: 500)")
    p.add_argument(
        "--mode",
        choices=("typed", "random"),
        help="cursor after the indentation + --typed-chars, or anywhere in the line "
        "(default: both)",
    )
    p.add_argument(
        "--typed-chars", type=int, default=10, help="characters typed in `typed` mode (default: 10)"
    )
    p.add_argument(
        "--min-confidence", type=float, default=0.0, help="below this counts as no answer"
    )
    p.add_argument(
        "--replay-lines",
        type=int,
        default=60,
        help="lines replayed keystroke by keystroke for keystrokes saved (default: 60; 0: off)",
    )
    p.add_argument(
        "--accept-rate",
        type=float,
        default=1.0,
        metavar="P",
        help="in the replay, the chance (0 < P <= 1) that a right suggestion is accepted at a "
        "keystroke; otherwise its next character is typed (default: 1, always)",
    )
    p.add_argument("--seed", type=int, default=0, help="which lines are sampled (default: 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.md, report.json and PNG plots"
    )
    _add_retrieval(p)
    _add_typed_through(p)
    add_repo_option(p)
    _add_store(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser(
        "lsp",
        help="language server on stdio, for any LSP editor (see `completiond lsp --help`)",
        add_help=False,
    )
    p.add_argument("lsp_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_lsp)

    p = sub.add_parser("shell-init", help="print the shell integration to source")
    p.add_argument("shell", choices=SHELLS, help='eval "$(completiond shell-init zsh)"')
    p.set_defaults(run=cmd_shell_init)
    return parser


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


def cmd_serve(args: argparse.Namespace) -> int:
    from completiond.daemon.daemon import Daemon, DaemonConfig
    from completiond.daemon.server import ServerConfig
    from completiond.daemon.trainer import TrainerConfig
    from completiond.daemon.watcher import WatchConfig

    tls = _serve_tls(args)  # checked before a token file is written
    config = DaemonConfig(
        repo=repo_root(args.repo),
        store=args.store,
        first_train_minutes=args.minutes,
        retrieval=_retrieval(args),
        decoder=_decoder(args),
        server=ServerConfig(
            socket_path=args.socket,
            listen=args.listen,
            max_workers=args.workers,
            allow_remote=args.allow_remote,
            token=_serve_token(args.token_file, "token"),
            completion_token=_serve_token(args.completion_token_file, "completion-only token"),
            tls=tls,
            insecure_remote=args.insecure_remote,
            metrics_port=args.metrics_port,
        ),
        trainer=TrainerConfig(
            minutes=args.retrain_minutes,
            model=_model_overrides(args),
            train={"device": args.device},
        ),
        watch=WatchConfig(
            enabled=not args.no_watch,
            quiet_s=args.watch_quiet,
            min_interval_s=args.watch_interval,
        ),
    )
    return Daemon(config).serve_forever(sys.stderr)


def _train_foreground(repo: Path, store: Path | None, minutes: float, **train: Any) -> int:
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


def cmd_train(args: argparse.Namespace) -> int:
    return _train_foreground(
        repo_root(args.repo),
        args.store,
        args.minutes,
        model=_model_overrides(args),
        threads=args.threads,
        seed=args.seed,
        warm_start=not args.full,
        device=args.device,
        nproc=args.nproc,
    )


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


def _age(created_unix: float) -> str:
    minutes = max(0, int((time.time() - created_unix) / 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _print_status(status: dict[str, Any]) -> None:
    model = status.get("model")
    rows = [("repository", status["repo"]), ("store", status["store"])]
    daemon = status.get("listenAddress")
    up = f"{daemon} (pid {status.get('pid')}, up {status.get('uptimeSeconds', 0):.0f} s)"
    rows.append(("daemon", up if daemon else "not running"))
    if model:
        rows.append(
            (
                "model",
                f"{model['version']} ({_age(model['createdUnix'])} old), "
                f"{int(model['parameters']):,} parameters, "
                f"validation {model['valBpc']:.3f} bits/char",
            )
        )
        rows.append(
            (
                "corpus",
                f"{model['trainFiles']} training files ({int(model['trainChars']):,} chars), "
                f"{model['valFiles']} validation files"
                + (f", commit {model['commit'][:12]}" if model.get("commit") else ""),
            )
        )
    else:
        rows.append(("model", "none yet"))
    if status.get("versions"):
        rows.append(("bundles", ", ".join(status["versions"])))
    if daemon:
        watching = "on" if status.get("watching") else "off"
        rows.append(("watching", f"{watching} ({status.get('fileEvents', 0)} file events)"))
        last = status.get("lastTrainingResult") or "none in this session"
        rows.append(("training", f"{status['trainingState']}; last run: {last}"))
        rows.append(("requests", f"{status['requestsTotal']} ({status['requestsFailed']} failed)"))
        for entry in status.get("feedback", []):
            shown = int(entry["shown"])
            taken = int(entry["accepted"]) + int(entry["partiallyAccepted"])
            rate = f"{100 * taken / shown:.0f}% accepted" if shown else "none shown"
            rows.append(
                (
                    "feedback",
                    f"{entry['client']}: {shown} shown, {entry['accepted']} accepted, "
                    f"{entry['partiallyAccepted']} partly, {entry['dismissed']} dismissed ({rate})",
                )
            )
        if status.get("executionProvider"):
            rows.append(("provider", status["executionProvider"]))
        if "retrieval" in status:
            rows.append(("retrieval", _retrieval_line(status["retrieval"])))
            if status["retrieval"].get("enabled"):
                rows.append(("index", _index_line(status["retrieval"])))
    for key, value in rows:
        print(f"{key:<11} {value}")


def _retrieval_line(info: dict[str, Any]) -> str:
    declined = float(info.get("declinedBelow", 0))
    typed_through = (
        f"; a suggestion typed through below confidence {declined:g} comes back as its first word"
        if declined > 0
        else "; a suggestion typed through is offered whole again"
    )
    if not info.get("enabled"):
        return "off (the model alone)" + typed_through
    chars = int(info.get("indexedChars", 0))
    index = (
        f"index of {chars:,} chars ({int(info['indexedPlaces']):,} places)"
        if chars
        else "no repository index yet (the current file only)"
    )
    below = float(info.get("modelBelow", 0))
    model = f"below confidence {below:g}" if below > 0 else "when nothing is found"
    fitted = "fitted to this repository" if info.get("calibrated") else "the defaults"
    start = float(info.get("startBelow", 0))
    starts = f", and for a start below confidence {start:g}" if start > 0 else ""
    return f"{index}; confidences: {fitted}; the model runs {model}{starts}{typed_through}"


def _index_line(info: dict[str, Any]) -> str:
    """The index's freshness: what `serve` applied of the files saved."""
    updated = float(info.get("indexUpdatedUnix", 0))
    seconds = max(0, int(time.time() - updated))
    when = f"updated {seconds} s ago" if seconds < 120 else f"updated {_age(updated)} ago"
    rebuilds = int(info.get("indexRebuilds", 0))
    rebuilding = ", one running" if info.get("indexRebuilding") else ""
    error = f"; {info['indexError']}" if info.get("indexError") else ""
    return (
        f"{when if updated else 'not built yet'}; "
        f"{int(info.get('indexPendingFiles', 0))} changed files pending; "
        f"{int(info.get('indexUpdatedFiles', 0))} files updated since its last full build "
        f"({rebuilds} full builds since start{rebuilding}){error}"
    )


def _offline_status(args: argparse.Namespace) -> dict[str, Any]:
    """What the store says when no daemon runs."""
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


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            status = MessageToDict(client.status(), always_print_fields_with_no_presence=True)
    except DaemonUnreachable:
        status = _offline_status(args)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
    except DaemonUnreachable:
        print("completiond: no daemon is running; training in the foreground", file=sys.stderr)
        return _train_foreground(
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
        _retrieval(args),
        _decoder(args),
    )
    print(json.dumps(report.summary(), indent=2) if args.json else report.to_markdown())
    return 0


def cmd_lsp(args: argparse.Namespace) -> int:
    from .lsp import main as lsp_main  # pygls loads only for the language server

    return lsp_main(args.lsp_args)


def cmd_shell_init(args: argparse.Namespace) -> int:
    print(snippet(args.shell), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lsp"]:  # the language server parses its own options (`lsp --help`)
        return cmd_lsp(argparse.Namespace(lsp_args=argv[1:]))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except CompletiondError as exc:
        print(f"completiond: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE and "connect" in (details or "").lower():
            details = f"cannot reach the daemon ({details}); is `completiond serve` running?"
        print(f"completiond: {code.name.lower()}: {details}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
