"""Option groups that several commands share, each next to the function that reads it back.

The connection options (`--repo`, `--socket`/`--listen`, `--token-file`, `--tls-ca`) live with
the client (`client.add_connection_options`), which the LSP bridge shares too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from completiond.completion.ranking import MODEL_BELOW, START_BELOW
from completiond.completion.retrieval import RetrievalConfig

if TYPE_CHECKING:
    from completiond.daemon.decoder import DecoderConfig


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        type=Path,
        help="model store directory (default: $XDG_CACHE_HOME/completiond/<repo>)",
    )


def add_model_options(p: argparse.ArgumentParser, minutes: float, what: str) -> None:
    """The training budget (`what` says of which run) and the model's shape."""
    p.add_argument("--minutes", type=float, default=minutes, help=f"{what} (default: {minutes:g})")
    p.add_argument("--hidden-size", type=int, help="LSTM units per layer (default: 256)")
    p.add_argument("--layers", type=int, help="LSTM layers (default: 1)")


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model shape options given, as `ModelConfig` fields (the rest keep its defaults)."""
    overrides = {"hidden_size": args.hidden_size, "num_layers": args.layers}
    return {k: v for k, v in overrides.items() if v is not None}


def add_device_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help=f"{what} (default: auto, the GPU when PyTorch sees one)",
    )


def add_retrieval_options(p: argparse.ArgumentParser) -> None:
    """How completions are chosen (serve and eval): retrieval, when the model runs, the
    typed-through cut."""
    p.add_argument(
        "--no-retrieval",
        action="store_true",
        help="complete with the model alone (no lines copied from the repository or the file)",
    )
    p.add_argument(
        "--model-below",
        type=float,
        default=MODEL_BELOW,
        metavar="CONF",
        help="run the model too when the best copied line's confidence is below CONF "
        f"(default: {MODEL_BELOW:g}; 0: only when nothing is found; "
        "above 1: always)",
    )
    p.add_argument(
        "--start-below",
        type=float,
        default=START_BELOW,
        metavar="CONF",
        help="when no candidate is this confident (or as confident as the request's "
        "min_confidence, when higher), offer the model's likeliest next characters (cut where "
        "probability x characters saved is largest) first if they are expected to save more "
        f"keystrokes (default: {START_BELOW:g}; 0: never; higher trades exact "
        "whole lines for keystrokes)",
    )
    p.add_argument(
        "--keep-typed-through",
        action="store_true",
        help="offer a suggestion again whole after you typed along it without accepting it "
        "(default: one less confident than 0.35 comes back as its first word only, the end of "
        "the name you are typing; per document; editors at their 0.6 threshold see no change)",
    )


def retrieval_config(args: argparse.Namespace) -> RetrievalConfig:
    return RetrievalConfig(enabled=not args.no_retrieval)


def decoder_config(args: argparse.Namespace) -> DecoderConfig:
    from completiond.daemon.decoder import DecoderConfig  # onnxruntime loads only when needed

    typed_through = {"declined_below": 0.0} if args.keep_typed_through else {}
    return DecoderConfig(
        model_below=args.model_below, start_below=args.start_below, **typed_through
    )
