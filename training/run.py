"""One training run, end to end: corpus -> tokenizer -> LSTM -> ONNX -> verified bundle.

This is what `completiond train` runs in the foreground and what the daemon runs in a child
process. Anything that fails leaves the store's current bundle untouched.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from completiond import __version__

from .bundle import MODEL_FILE, TOKENIZER_FILE, Bundle, ModelStore, new_version
from .corpus import build_corpus
from .export import check_parity, export_onnx, quantize_if_lossless
from .files import FileSelectionConfig
from .model import CharLSTM, ModelConfig
from .progress import Progress
from .tokenizer import CharTokenizer
from .train import ProgressFn, TrainConfig, train

EXPORT_RESERVE_S = 10.0  # budget kept back for export and the parity check


def train_repository(
    repo: Path,
    store: ModelStore,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    selection: FileSelectionConfig | None = None,
    on_progress: ProgressFn = lambda _: None,
) -> Bundle:
    """Train on `repo` and publish the bundle to `store`; returns the published bundle."""
    train_config = train_config or TrainConfig()
    start = time.monotonic()
    budget_s = train_config.minutes * 60
    deadline = start + max(1.0, budget_s - min(EXPORT_RESERVE_S, 0.1 * budget_s))

    on_progress(Progress("corpus", 0.0, budget_s, message=f"reading {repo}"))
    corpus = build_corpus(repo, selection)
    tokenizer = CharTokenizer.fit([corpus.train_text])
    config = ModelConfig(
        **{**asdict(model_config or ModelConfig()), "vocab_size": tokenizer.vocab_size}
    )
    torch.manual_seed(train_config.seed)
    model = CharLSTM(config)
    on_progress(
        Progress(
            "corpus",
            0.02,
            budget_s,
            message=(
                f"{len(corpus.train_files)} training files ({len(corpus.train_text):,} chars), "
                f"{len(corpus.val_files)} validation files; {model.parameter_count():,} parameters"
            ),
        )
    )
    result = train(
        model,
        tokenizer.encode(corpus.train_text),
        tokenizer.encode(corpus.val_text),
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
        val_ids = tokenizer.encode(corpus.val_text[: train_config.max_val_chars])
        weights = quantize_if_lossless(staging / MODEL_FILE, val_ids) if train_config.int8 else {}
        (staging / TOKENIZER_FILE).write_text(tokenizer.to_json())
        meta = {
            "version": version,
            "created_unix": time.time(),
            "completiond_version": __version__,
            "model": asdict(config),
            "train": asdict(train_config),
            "tokenizer": {"type": "char", "vocab_size": tokenizer.vocab_size},
            "corpus": corpus.summary(),
            "repo": str(repo.resolve()),
            "val_bpc": result.val_bpc,
            "parameters": model.parameter_count(),
            "steps": result.steps,
            "train_seconds": result.seconds,
            "chars_per_second": result.chars_seen / max(1e-9, result.seconds),
            "parity_max_abs_diff": parity,
            "weights": weights,
        }
        bundle = store.publish(staging, json.loads(json.dumps(meta)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after publish; cleans up a failure
    on_progress(
        Progress("done", 1.0, 0.0, result.val_bpc, f"model {bundle.version}", bundle.version)
    )
    return bundle
