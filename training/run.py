"""One training run, end to end: corpus -> tokenizer -> LSTM -> ONNX -> verified bundle.

This is what `completiond train` runs in the foreground and what the daemon runs in a child
process. Anything that fails leaves the store's current bundle untouched.

Retraining starts from the current model when it can (same architecture, its alphabet still
covers the corpus): a short fine-tune then beats a full run. The new model is promoted (made
current) only if it scores at least as well as the current one on the same held-out files;
otherwise it is kept aside and the reason reported.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from completiond import __version__
from completiond.errors import BundleError

from .bundle import MODEL_FILE, TOKENIZER_FILE, WEIGHTS_FILE, Bundle, ModelStore, new_version
from .corpus import Corpus, build_corpus
from .export import check_parity, export_onnx, onnx_bits_per_char, quantize_if_lossless
from .files import FileSelectionConfig
from .model import CharLSTM, ModelConfig
from .progress import Progress
from .tokenizer import CharTokenizer
from .train import ProgressFn, TrainConfig, train

EXPORT_RESERVE_S = 10.0  # budget kept back for export, parity check and scoring
MIN_COVERAGE = 0.999  # a warm start needs the old alphabet to cover this much of the corpus


@dataclass(frozen=True)
class RunResult:
    bundle: Bundle
    promoted: bool  # made current; False = kept aside, see `reason`
    reason: str


def _previous(store: ModelStore) -> Bundle | None:
    try:
        return store.current()
    except BundleError:
        return None


def _warm_start(
    previous: Bundle | None, wanted: ModelConfig, corpus: Corpus, train_config: TrainConfig
) -> tuple[CharTokenizer, ModelConfig, dict[str, torch.Tensor]] | None:
    """The previous model's tokenizer, config and weights, if fine-tuning it is possible."""
    if not train_config.warm_start or previous is None:
        return None
    if not (previous.directory / WEIGHTS_FILE).is_file():
        return None
    old = ModelConfig(**previous.meta["model"])
    if asdict(old) != {**asdict(wanted), "vocab_size": old.vocab_size}:
        return None  # another architecture was asked for
    if previous.tokenizer.covers(corpus.train_text) < MIN_COVERAGE:
        return None  # new characters: the alphabet must grow, so train from scratch
    with np.load(previous.directory / WEIGHTS_FILE, allow_pickle=False) as arrays:
        weights = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    return previous.tokenizer, old, weights


def train_repository(
    repo: Path,
    store: ModelStore,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    selection: FileSelectionConfig | None = None,
    on_progress: ProgressFn = lambda _: None,
) -> RunResult:
    """Train on `repo`, publish the bundle to `store`, promote it if it is not worse."""
    train_config = train_config or TrainConfig()
    start = time.monotonic()
    budget_s = train_config.minutes * 60
    deadline = start + max(1.0, budget_s - min(EXPORT_RESERVE_S, 0.1 * budget_s))

    on_progress(Progress("corpus", 0.0, budget_s, message=f"reading {repo}"))
    corpus = build_corpus(repo, selection)
    previous = _previous(store)
    wanted = model_config or ModelConfig()
    warm = _warm_start(previous, wanted, corpus, train_config)
    torch.manual_seed(train_config.seed)
    if warm is not None:
        tokenizer, config, weights = warm
        model = CharLSTM(config)
        model.load_state_dict(weights)
        how = f"fine-tuning model {previous.version if previous else ''}"
    else:
        tokenizer = CharTokenizer.fit([corpus.train_text])
        config = ModelConfig(**{**asdict(wanted), "vocab_size": tokenizer.vocab_size})
        model = CharLSTM(config)
        how = "training from scratch"
    on_progress(
        Progress(
            "corpus",
            0.02,
            budget_s,
            message=(
                f"{len(corpus.train_files)} training files ({len(corpus.train_text):,} chars), "
                f"{len(corpus.val_files)} validation files; {model.parameter_count():,} "
                f"parameters; {how}"
            ),
        )
    )
    val_ids = tokenizer.encode(corpus.val_text[: train_config.max_val_chars])
    result = train(
        model,
        tokenizer.encode(corpus.train_text),
        val_ids,
        train_config,
        deadline,
        on_progress,
        progress_span=(0.02, 0.95),
    )

    on_progress(Progress("exporting", 0.95, EXPORT_RESERVE_S, result.val_bpc, "ONNX export"))
    version = new_version()
    staging = store.staging_dir(version)
    try:
        export_onnx(result.model, staging / MODEL_FILE)
        parity = check_parity(result.model, staging / MODEL_FILE)
        weights = quantize_if_lossless(staging / MODEL_FILE, val_ids) if train_config.int8 else {}
        (staging / TOKENIZER_FILE).write_text(tokenizer.to_json())
        np.savez(
            staging / WEIGHTS_FILE,
            **{k: v.detach().numpy() for k, v in result.model.state_dict().items()},
        )
        # Both models scored as served (onnxruntime), on the same held-out text.
        served_bpc = onnx_bits_per_char(staging / MODEL_FILE, val_ids)
        promoted, reason, old_bpc = True, "first model", None
        if previous is not None:
            old_ids = previous.tokenizer.encode(corpus.val_text[: train_config.max_val_chars])
            old_bpc = onnx_bits_per_char(previous.model_path, old_ids)
            promoted = served_bpc <= old_bpc + 1e-6
            reason = (
                f"{served_bpc:.3f} bits/char vs {old_bpc:.3f} for model {previous.version} "
                "on the same held-out files"
            )
        meta = {
            "version": version,
            "created_unix": time.time(),
            "completiond_version": __version__,
            "model": asdict(config),
            "train": asdict(train_config),
            "tokenizer": {"type": "char", "vocab_size": tokenizer.vocab_size},
            "corpus": corpus.summary(),
            "repo": str(repo.resolve()),
            "val_bpc": served_bpc,
            "train_val_bpc": result.val_bpc,
            "parameters": model.parameter_count(),
            "steps": result.steps,
            "train_seconds": result.seconds,
            "chars_per_second": result.chars_seen / max(1e-9, result.seconds),
            "parity_max_abs_diff": parity,
            "weights": weights,
            "warm_start_from": previous.version if warm is not None and previous else None,
            "previous": {"version": previous.version, "val_bpc": old_bpc} if previous else None,
            "promoted": promoted,
        }
        bundle = store.publish(staging, json.loads(json.dumps(meta)), make_current=promoted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after publish; cleans up a failure
    if promoted:
        final = Progress(
            "done", 1.0, 0.0, served_bpc, f"model {bundle.version}: {reason}", bundle.version
        )
    else:
        final = Progress(
            "rejected", 1.0, 0.0, served_bpc,
            f"model {bundle.version} kept aside, not better: {reason}", bundle.version,
        )  # fmt: skip
    on_progress(final)
    return RunResult(bundle, promoted, reason)
