"""`completiond pretrain`: a language's base model, learned from code already on the machine.

The corpus is what core/discovery.py finds (or `--from` directories), read with the repository's
file rules and secret masking, each content once, without any file whose content is also in the
repository being served. Training is run.py's loop in segments of `checkpoint_s`: after each, the
weights and the time spent are saved, so a killed run resumes where its last segment ended (each
segment restarts the learning-rate schedule: warm restarts; one that ends worse than the best so
far goes back to the best weights). The base is written atomically into
the user's cache, its metadata last, with a manifest of its files' content hashes. The last
checkpoint stays beside it, so the same command with a larger budget continues a finished base.
One process at a time builds a base: it holds `bases/<language>.lock` (core/discovery.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from completiond.core.bundle import sha256_file
from completiond.core.corpus import read_files
from completiond.core.discovery import (
    BASE_MANIFEST,
    BASE_META,
    BASE_TOKENIZER,
    BASE_WEIGHTS,
    Gathered,
    base_lock,
    gather,
    outermost,
    text_hash,
)
from completiond.core.durable import private_dir, write_atomically, write_text_atomically
from completiond.core.errors import CorpusError
from completiond.core.files import split_files
from completiond.core.progress import Progress
from completiond.core.tokenizer import CharTokenizer
from completiond.core.version import __version__

from .model import CharLSTM, ModelConfig
from .train import ProgressFn, StreamedText, TrainConfig, TrainData, read_training_texts, train

CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_WEIGHTS = "checkpoint.npz"
VAL_FRACTION = 0.02  # held-out files; the validation text is capped at max_val_chars anyway
ROOT = Path("/")  # gathered paths are relative to it


@dataclass(frozen=True)
class PretrainResult:
    directory: Path
    meta: dict[str, Any]
    resumed: bool


def repository_hashes(repo: Path | None) -> set[str]:
    """Content hashes of the repository's trainable files (none of them goes into a base)."""
    if repo is None:
        return set()
    return {text_hash(text) for text in read_files(repo)[0].values()}


def _save_weights(path: Path, model: CharLSTM) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    write_atomically(path, lambda f: np.savez(f, **arrays))


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path, allow_pickle=False) as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


@dataclass
class _Checkpoint:
    """How far an interrupted run of the same corpus and architecture got; its weights are in
    CHECKPOINT_WEIGHTS beside it."""

    tokenizer: str  # the run's alphabet (JSON), fixed at its start
    seconds: float = 0.0
    segments: int = 0
    steps: int = 0
    val_bpc: float = math.inf  # of the saved weights

    @classmethod
    def load(cls, directory: Path, key: dict[str, Any]) -> _Checkpoint | None:
        try:
            saved = json.loads((directory / CHECKPOINT_META).read_text())
            if saved["key"] != key or not (directory / CHECKPOINT_WEIGHTS).is_file():
                return None
            return cls(**saved["progress"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, directory: Path, key: dict[str, Any], model: CharLSTM) -> None:
        # Weights first: checkpoint.json never describes older weights than those on disk.
        _save_weights(directory / CHECKPOINT_WEIGHTS, model)
        text = json.dumps({"key": key, "progress": asdict(self)})
        write_text_atomically(directory / CHECKPOINT_META, text)


def _fit_alphabet(files: Iterable[str]) -> CharTokenizer:
    return CharTokenizer.fit(read_training_texts(ROOT, list(files)))


def _training_data(
    files: list[str], chars: int, tokenizer: CharTokenizer, config: TrainConfig
) -> TrainData:
    if chars > config.stream_above_chars:
        return StreamedText(ROOT, files, tokenizer, chars, config.stream_piece_chars)
    return tokenizer.encode("".join(read_training_texts(ROOT, files)))


def _val_ids(files: list[str], tokenizer: CharTokenizer, max_chars: int) -> np.ndarray:
    text = ""
    for piece in read_training_texts(ROOT, files):
        text += piece
        if len(text) >= max_chars:
            break
    return tokenizer.encode(text[:max_chars])


def _split(gathered: Gathered) -> tuple[list[str], list[str]]:
    if len(gathered.files) < 2:
        raise CorpusError(
            f"{len(gathered.files)} trainable file(s) found for the base: it needs at least 2 "
            f"(skipped: {dict(sorted(gathered.skipped.items()))})"
        )
    return split_files(gathered.files, VAL_FRACTION)


def _scaled(
    on_progress: ProgressFn, budget_s: float, done_s: float, segment_s: float
) -> ProgressFn:
    """The training loop's events for one segment, as parts of the whole run (bar and ETA)."""
    later_s = max(0.0, budget_s - done_s - segment_s)

    def report(p: Progress) -> None:
        on_progress(replace(p, eta_s=p.eta_s + later_s))

    return report


def pretrain(
    language: str,
    roots: list[Path],
    directory: Path,
    repo: Path | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_s: float = 300.0,
    on_progress: ProgressFn = lambda _: None,
) -> PretrainResult:
    """Build (or resume building) the `language` base from `roots` into `directory`;
    TrainingBusy when another process is building it."""
    with base_lock(directory):
        return _build(
            language, roots, directory, repo, model_config, train_config, checkpoint_s, on_progress
        )


def _build(
    language: str,
    roots: list[Path],
    directory: Path,
    repo: Path | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_s: float,
    on_progress: ProgressFn,
) -> PretrainResult:
    budget_s = train_config.minutes * 60
    roots = outermost(roots)
    on_progress(Progress("corpus", 0.0, budget_s, message=f"reading {len(roots)} directories"))
    gathered = gather(roots, language, repository_hashes(repo))
    train_files, val_files = _split(gathered)
    private_dir(directory)
    # A checkpoint of the same files and architecture resumes (to the budget asked now).
    key = {"manifest": gathered.manifest_hash(), "model": asdict(model_config)}
    checkpoint = _Checkpoint.load(directory, key)
    resumed = checkpoint is not None
    if checkpoint is None:
        checkpoint = _Checkpoint(_fit_alphabet(train_files).to_json())
    tokenizer = CharTokenizer.from_json(checkpoint.tokenizer)
    config = ModelConfig(**{**asdict(model_config), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(train_config.seed)
    model = CharLSTM(config)
    if resumed:
        model.load_state_dict(_load_weights(directory / CHECKPOINT_WEIGHTS))
    train_chars = gathered.chars * len(train_files) // max(1, len(gathered.files))
    data = _training_data(train_files, train_chars, tokenizer, train_config)
    val_ids = _val_ids(val_files, tokenizer, train_config.max_val_chars)
    on_progress(
        Progress(
            "corpus",
            0.02,
            max(0.0, budget_s - checkpoint.seconds),
            message=f"{len(gathered.files)} files ({gathered.chars:,} chars), "
            f"{model.parameter_count():,} parameters"
            + (f"; resuming after {checkpoint.seconds / 60:.1f} min" if resumed else ""),
        )
    )
    segments = _Segments(train_config, checkpoint_s, directory, key, on_progress)
    segments.run(model, data, val_ids, checkpoint)
    meta = {
        "language": language,
        "manifest_sha256": key["manifest"],
        "model": asdict(config),
        "val_bpc": checkpoint.val_bpc,
        "steps": checkpoint.steps,
        "seconds": checkpoint.seconds,
        "segments": checkpoint.segments,
        "train_files": len(train_files),
        "val_files": len(val_files),
        "chars": gathered.chars,
        "skipped": gathered.skipped,
        "roots": [str(r) for r in roots],
        "repo_excluded": str(repo) if repo else None,
        "created_unix": time.time(),
        "completiond_version": __version__,
    }
    _publish(directory, meta, tokenizer, model, gathered)
    on_progress(Progress("done", 1.0, 0.0, checkpoint.val_bpc, f"{language} base in {directory}"))
    return PretrainResult(directory, meta, resumed)


def _publish(
    directory: Path,
    meta: dict[str, Any],
    tokenizer: CharTokenizer,
    model: CharLSTM,
    gathered: Gathered,
) -> None:
    """Write the base's files, then its metadata naming their hashes (a reader takes a base
    whose files do not match as absent). The checkpoint stays: a larger budget continues it."""
    (directory / BASE_META).unlink(missing_ok=True)
    write_text_atomically(directory / BASE_TOKENIZER, tokenizer.to_json())
    _save_weights(directory / BASE_WEIGHTS, model)
    manifest = {"files": dict(zip(gathered.files, gathered.hashes, strict=True))}
    write_text_atomically(directory / BASE_MANIFEST, json.dumps(manifest, indent=0))
    names = (BASE_TOKENIZER, BASE_WEIGHTS, BASE_MANIFEST)
    meta["files"] = {name: sha256_file(directory / name) for name in names}
    write_text_atomically(directory / BASE_META, json.dumps(meta, indent=1))


@dataclass
class _Segments:
    """The training loop run in segments of `checkpoint_s`, the run checkpointed after each."""

    config: TrainConfig
    checkpoint_s: float
    directory: Path
    key: dict[str, Any]
    on_progress: ProgressFn

    def run(
        self, model: CharLSTM, data: TrainData, val_ids: np.ndarray, checkpoint: _Checkpoint
    ) -> None:
        """Until the budget is spent; with `max_steps` (tests), one segment of that many steps."""
        budget_s = self.config.minutes * 60
        while checkpoint.seconds < budget_s - 1.0:
            if self.config.max_steps and checkpoint.segments:
                break
            length = min(self.checkpoint_s, budget_s - checkpoint.seconds)
            start = time.monotonic()
            result = train(
                model,
                data,
                val_ids,
                replace(self.config, seed=self.config.seed + checkpoint.segments),  # new order
                start + length,
                _scaled(self.on_progress, budget_s, checkpoint.seconds, length),
                (0.02 + 0.93 * checkpoint.seconds / budget_s,
                 0.02 + 0.93 * (checkpoint.seconds + length) / budget_s),
            )  # fmt: skip
            checkpoint.seconds += time.monotonic() - start
            checkpoint.segments += 1
            checkpoint.steps += result.steps
            # An infinite best means no weights worth going back to (none saved yet).
            if result.val_bpc < checkpoint.val_bpc or math.isinf(checkpoint.val_bpc):
                checkpoint.val_bpc = result.val_bpc
            else:
                self._keep_best(model)
            checkpoint.save(self.directory, self.key, model)

    def _keep_best(self, model: CharLSTM) -> None:
        """Back to the checkpoint's weights after a segment that did not beat them: each
        segment restarts the learning rate, and on a small corpus (a machine with few packages
        of the language) the restart overfits, so the last segment is not always the best."""
        model.load_state_dict(_load_weights(self.directory / CHECKPOINT_WEIGHTS))
