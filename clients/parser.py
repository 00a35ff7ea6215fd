"""The `completiond` argument parser: one function per command, each naming the function that
runs it (`args.run`). Every option is documented in docs/commands.md (tests/test_cli.py checks
it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from completiond.core.discovery import LANGUAGES
from completiond.core.limits import DEFAULT_COMPLETION_CHARS, MAX_COMPLETION_CHARS
from completiond.core.version import __version__

from .client import add_connection_options, add_repo_option
from .commands import (
    cmd_complete,
    cmd_eval,
    cmd_lsp,
    cmd_retrain,
    cmd_rollback,
    cmd_shell_init,
    cmd_status,
)
from .options import (
    add_device_option,
    add_model_options,
    add_retrieval_options,
    add_store_option,
)
from .serve_command import cmd_serve
from .shell import SHELLS
from .train_commands import cmd_pretrain, cmd_train

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="completiond",
        description="Code completions from a small model trained on your repository.",
    )
    parser.add_argument("--version", action="version", version=f"completiond {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the daemon does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        _add_serve,
        _add_train,
        _add_pretrain,
        _add_complete,
        _add_status,
        _add_retrain,
        _add_rollback,
        _add_eval,
        _add_lsp,
        _add_shell_init,
    ):
        add_command(sub)
    return parser


def _add_serve(sub: Commands) -> None:
    p = sub.add_parser("serve", help="serve completions (training a first model if needed)")
    add_repo_option(p)
    add_store_option(p)
    _add_serve_address(p)
    add_model_options(p, 0.75, "budget of the quick first model of a fresh repository, in minutes")
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
    add_device_option(p, "device of the training runs")
    add_retrieval_options(p)
    _add_watch_options(p)
    _add_idle_base_options(p)
    _add_lifetime_options(p)
    p.set_defaults(run=cmd_serve)


def _add_idle_base_options(p: argparse.ArgumentParser) -> None:
    """The base model the daemon builds while nobody types (daemon/idle_base.py)."""
    p.add_argument(
        "--pretrain-when-idle",
        action="store_true",
        help="build the base model of the repository's language (as `pretrain` does) in the "
        "background after 2 min without completion requests, paused while they come and while "
        "the daemon trains, then train the model from it; costs one core for up to an hour "
        "(default: off)",
    )
    p.add_argument(
        "--pretrain-from",
        dest="pretrain_sources",
        action="append",
        type=Path,
        metavar="DIR",
        help="with --pretrain-when-idle: learn from DIR (repeatable) instead of the code "
        "installed on this machine (pretrain's --from)",
    )


def _add_lifetime_options(p: argparse.ArgumentParser) -> None:
    """How long the daemon runs, and who started it (`completiond lsp` starts daemons)."""
    p.add_argument(
        "--idle-exit",
        type=float,
        metavar="MIN",
        help="stop after MIN minutes with no client call and no training run (default: keep "
        "running; daemons started by `completiond lsp` stop after 30)",
    )
    p.add_argument(
        "--started-by",
        default="",
        metavar="NAME",
        help="who started the daemon, shown by `status` (`completiond lsp` passes lsp)",
    )


def _add_serve_address(p: argparse.ArgumentParser) -> None:
    """Where the daemon listens and who may call it."""
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
    _add_tls_options(p)


def _add_tls_options(p: argparse.ArgumentParser) -> None:
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


def _add_watch_options(p: argparse.ArgumentParser) -> None:
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


def _add_train(sub: Commands) -> None:
    p = sub.add_parser("train", help="train a model in the foreground (no daemon needed)")
    add_repo_option(p)
    add_store_option(p)
    add_model_options(p, 5.0, "training budget, in minutes")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: all cores but one)"
    )
    add_device_option(p, "train on the CPU or a CUDA GPU")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="training processes on this machine (torch.distributed DDP; default: 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--full",
        action="store_true",
        help="do not fine-tune the current model: start from the base of the repository's "
        "language (`pretrain`), or from scratch without one",
    )
    p.set_defaults(run=cmd_train)


def _add_pretrain(sub: Commands) -> None:
    p = sub.add_parser(
        "pretrain",
        help="build a language's base model from code installed on this machine (not the "
        "repository's)",
    )
    add_repo_option(p)
    p.add_argument(
        "--language",
        choices=sorted(LANGUAGES),
        help="the base to build (default: the repository's language, else python)",
    )
    p.add_argument(
        "--from",
        dest="sources",
        action="append",
        type=Path,
        metavar="DIR",
        help="learn from DIR (repeatable); replaces the discovery of installed code",
    )
    add_model_options(p, 60.0, "pretraining budget, in minutes")
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        help="save progress every M minutes; a killed run resumes from it (default: 5)",
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: all cores but one)"
    )
    add_device_option(p, "train on the CPU or a CUDA GPU")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--json-progress",
        action="store_true",
        help="report progress as JSON lines on standard output instead of a bar (how "
        "`serve --pretrain-when-idle` follows its build)",
    )
    p.set_defaults(run=cmd_pretrain)


def _add_complete(sub: Commands) -> None:
    p = sub.add_parser("complete", help="complete one line (prints the completion alone)")
    p.add_argument("prefix", help="text before the cursor; '-' reads it from standard input")
    p.add_argument("--suffix", default="", help="text after the cursor")
    p.add_argument("--path", default="", help="file being edited (a language hint, never read)")
    p.add_argument("-n", type=int, default=1, help="number of candidates (default: 1, max 16)")
    p.add_argument(
        "--max-chars",
        type=int,
        default=0,
        help=f"longest completion (default: {DEFAULT_COMPLETION_CHARS}, max "
        f"{MAX_COMPLETION_CHARS})",
    )
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


def _add_status(sub: Commands) -> None:
    p = sub.add_parser("status", help="show the model, training state and request counts")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    add_connection_options(p)
    add_store_option(p)
    p.set_defaults(run=cmd_status)


def _add_retrain(sub: Commands) -> None:
    p = sub.add_parser("retrain", help="retrain now (through the daemon, else in the foreground)")
    p.add_argument(
        "--minutes", type=float, default=0.0, help="training budget (default: the daemon's)"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="do not fine-tune the current model: start from the base of the repository's "
        "language (`pretrain`), or from scratch without one",
    )
    add_connection_options(p)
    add_store_option(p)
    p.set_defaults(run=cmd_retrain)


def _add_rollback(sub: Commands) -> None:
    p = sub.add_parser("rollback", help="serve an earlier model again (default: the previous)")
    p.add_argument("version", nargs="?", default="", help="bundle version (see `status`)")
    add_connection_options(p)
    add_store_option(p)
    p.set_defaults(run=cmd_rollback)


def _add_eval(sub: Commands) -> None:
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
    _add_replay_options(p)
    p.add_argument("--seed", type=int, default=0, help="which lines are sampled (default: 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.md, report.json and PNG plots"
    )
    add_retrieval_options(p)
    add_repo_option(p)
    add_store_option(p)
    p.set_defaults(run=cmd_eval)


def _add_replay_options(p: argparse.ArgumentParser) -> None:
    """How eval replays lines keystroke by keystroke to count the keystrokes saved."""
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


def _add_lsp(sub: Commands) -> None:
    # The language server parses its own options (clients/lsp.py), so `lsp --help` shows them.
    p = sub.add_parser(
        "lsp",
        help="language server on stdio, for any LSP editor (see `completiond lsp --help`)",
        add_help=False,
    )
    p.add_argument("lsp_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_lsp)


def _add_shell_init(sub: Commands) -> None:
    p = sub.add_parser("shell-init", help="print the shell integration to source")
    p.add_argument("shell", choices=SHELLS, help='eval "$(completiond shell-init zsh)"')
    p.set_defaults(run=cmd_shell_init)
