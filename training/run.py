"""One training run, end to end: corpus -> tokenizer -> LSTM -> ONNX -> verified bundle.

This is what `completiond train` runs in the foreground and what the daemon runs in a child
process. Anything that fails leaves the store's current bundle untouched.

Retraining starts from the current model when it can (same architecture, its alphabet still
covers the corpus): a short fine-tune then beats a full run. The new model is promoted (made
current) only if it scores at least as well as the current one on the same held-out files;
otherwise it is kept aside and the reason reported. Without a model to fine-tune (or with
`--full`), it starts from the base of the repository's language when `completiond pretrain`
built one (pretrain.py): the base's alphabet, extended by the repository's own characters, and
its weights; a base newer than the current model (built or trained further since) is started
from once instead of fine-tuning.

The run is three steps, `prepare` -> `train` -> `publish`, so that a distributed run
(distributed.py) can do the first and the last on rank 0 only.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from completiond.completion.calibration import (
    CALIBRATION_FILE,
    Calibration,
    calibrate,
    save_calibration,
)
from completiond.completion.file_cache import META_KEY
from completiond.completion.retrieval import RetrievalConfig
from completiond.core.bundle import (
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Bundle,
    ModelStore,
    new_version,
)
from completiond.core.corpus import Corpus, build_corpus, read_texts
from completiond.core.discovery import (
    BASE_TOKENIZER,
    BASE_WEIGHTS,
    bases_dir,
    language_of,
    read_base_meta,
)
from completiond.core.errors import BundleError
from completiond.core.files import FileSelectionConfig
from completiond.core.index import INDEX_FILE, index_repository
from completiond.core.progress import Progress
from completiond.core.tokenizer import CharTokenizer
from completiond.core.version import __version__

from .export import check_parity, export_onnx, onnx_bits_per_char, quantize_if_lossless
from .file_cache_fit import CacheFitConfig, fit_file_cache
from .model import CharLSTM, ModelConfig
from .train import (
    ProgressFn,
    StreamedText,
    TrainConfig,
    TrainData,
    TrainResult,
    resolve_device,
    train,
)

EXPORT_RESERVE_S = 10.0  # budget kept back for export, parity check and scoring
MIN_COVERAGE = 0.999  # a warm start needs the old alphabet to cover this much of the corpus
TRAIN_SPAN = (0.02, 0.95)  # the part of the progress bar the training loop fills


@dataclass(frozen=True)
class RunResult:
    bundle: Bundle
    promoted: bool  # made current; False = kept aside, see `reason`
    reason: str


@dataclass
class Prepared:
    """Everything a run decides before training: corpus, alphabet, architecture, start."""

    corpus: Corpus
    summary: dict[str, object]  # corpus.summary(), taken before a large train_text is dropped
    previous: Bundle | None
    tokenizer: CharTokenizer
    config: ModelConfig
    weights: dict[str, torch.Tensor] | None  # the previous model's, when fine-tuning it
    how: str
    val_ids: np.ndarray
    streamed: bool = False  # the training loop reads the files in pieces (large corpora)
    base: dict[str, Any] | None = None  # the base the weights come from: language, manifest
    fine_tunes: bool = False  # the weights are the previous model's

    def model(self) -> CharLSTM:
        model = CharLSTM(self.config)
        if self.weights is not None:
            model.load_state_dict(self.weights)
        return model


def _previous(store: ModelStore) -> Bundle | None:
    try:
        return store.current()
    except BundleError:
        return None


def _coverage(tokenizer: CharTokenizer, text: str, piece: int = 1 << 20) -> float:
    """tokenizer.covers(text), encoding a piece at a time (bounded memory on large corpora)."""
    if len(text) <= piece:
        return tokenizer.covers(text)
    known = sum(
        int(np.count_nonzero(tokenizer.encode(text[i : i + piece])))
        for i in range(0, len(text), piece)
    )
    return known / len(text)


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
    if _coverage(previous.tokenizer, corpus.train_text) < MIN_COVERAGE:
        return None  # new characters: the alphabet must grow, so train from scratch
    with np.load(previous.directory / WEIGHTS_FILE, allow_pickle=False) as arrays:
        weights = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    return previous.tokenizer, old, weights


def extend_weights(weights: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """A model's weights for an alphabet extended at its end: the new characters' embedding
    and output rows start as copies of the unknown character's, which is what the model took
    them for until now, each output bias lowered so that a new character starts at 1/(n+1) of
    the unknown character's probability (n characters added)."""
    out = dict(weights)
    for name in ("embed.weight", "head.weight", "head.bias"):
        old = weights[name]
        added = vocab_size - old.shape[0]
        if added <= 0:
            continue
        rows = old[:1].repeat(added, *([1] * (old.dim() - 1)))
        if name == "head.bias":
            rows = rows - math.log(added + 1)
        out[name] = torch.cat([old, rows])
    return out


def _fitting_base(wanted: ModelConfig, corpus: Corpus) -> tuple[Path, dict[str, Any]] | None:
    """The directory and metadata of the base of the repository's language, when one was built
    with the architecture asked for."""
    language = language_of([*corpus.train_files, *corpus.val_files])
    if language is None:
        return None
    directory = bases_dir() / language
    meta = read_base_meta(directory)
    if meta is None:
        return None
    old = ModelConfig(**meta["model"])
    if asdict(old) != {**asdict(wanted), "vocab_size": old.vocab_size}:
        return None
    return directory, meta


def _descends(model_meta: dict[str, Any], base_meta: dict[str, Any]) -> bool:
    """Whether a model started from this very base: the same files, trained as far (a base
    continued with a larger budget is a better one)."""
    origin = model_meta.get("base") or {}
    return (origin.get("manifest_sha256"), origin.get("steps")) == (
        base_meta["manifest_sha256"],
        base_meta["steps"],
    )


def _start_over(base_meta: dict[str, Any], previous: Bundle | None, store: ModelStore) -> bool:
    """Start from the base rather than fine-tune the current model: the model does not descend
    from the base now on disk (it came before it) and no model of the store did (once per base:
    one kept aside as not better, or rolled back from, says fine-tuning serves better)."""
    if previous is None or _descends(previous.meta, base_meta):
        return False
    for version in store.versions():
        try:
            meta = json.loads((store.bundles_dir / version / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and _descends(meta, base_meta):
            return False
    return True


def _base_start(
    directory: Path, meta: dict[str, Any], corpus: Corpus
) -> tuple[CharTokenizer, ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """The base's weights and alphabet, extended by the repository's characters; what the
    model's meta.json records of it."""
    base_tokenizer = CharTokenizer.from_json((directory / BASE_TOKENIZER).read_text())
    tokenizer = base_tokenizer.extended([corpus.train_text])
    with np.load(directory / BASE_WEIGHTS, allow_pickle=False) as arrays:
        weights = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    config = ModelConfig(**{**meta["model"], "vocab_size": tokenizer.vocab_size})
    base = {
        "language": meta["language"],
        "manifest_sha256": meta["manifest_sha256"],
        "steps": meta["steps"],
        "val_bpc": meta["val_bpc"],
        "files": meta["train_files"] + meta["val_files"],
    }
    return tokenizer, config, extend_weights(weights, tokenizer.vocab_size), base


def streams_from_files(corpus: Corpus, train_config: TrainConfig) -> bool:
    """Whether the training text is too large to encode whole and can be re-read from its
    files (not when a single file was split by lines for validation)."""
    return bool(corpus.val_files) and len(corpus.train_text) > train_config.stream_above_chars


def prepare(
    repo: Path,
    store: ModelStore,
    model_config: ModelConfig | None,
    train_config: TrainConfig,
    selection: FileSelectionConfig | None,
    on_progress: ProgressFn,
) -> Prepared:
    """Read the corpus, choose the start: the current model (fine-tuning), the base of the
    repository's language, or nothing."""
    budget_s = train_config.minutes * 60
    on_progress(Progress("corpus", 0.0, budget_s, message=f"reading {repo}"))
    corpus = build_corpus(repo, selection)
    previous = _previous(store)
    wanted = model_config or ModelConfig()
    fitting = _fitting_base(wanted, corpus)
    over = fitting is not None and _start_over(fitting[1], previous, store)
    warm = None if over else _warm_start(previous, wanted, corpus, train_config)
    base_start = _base_start(*fitting, corpus) if fitting is not None and warm is None else None
    torch.manual_seed(train_config.seed)
    base = None
    if warm is not None:
        tokenizer, config, weights = warm
        how = f"fine-tuning model {previous.version if previous else ''}"
        base = previous.meta.get("base") if previous else None  # still descends from it
    elif base_start is not None:
        tokenizer, config, weights, base = base_start
        how = f"starting from the {base['language']} base"
        if over and previous is not None:
            how += f" (newer than model {previous.version})"
    else:
        tokenizer = CharTokenizer.fit([corpus.train_text])
        config = ModelConfig(**{**asdict(wanted), "vocab_size": tokenizer.vocab_size})
        weights = None
        how = "training from scratch"
    val_ids = tokenizer.encode(corpus.val_text[: train_config.max_val_chars])
    return Prepared(
        corpus, corpus.summary(), previous, tokenizer, config, weights, how, val_ids,
        base=base, fine_tunes=warm is not None,
    )  # fmt: skip


def report_start(
    prepared: Prepared, model: CharLSTM, budget_s: float, on_progress: ProgressFn
) -> None:
    corpus = prepared.corpus
    on_progress(
        Progress(
            "corpus",
            0.02,
            budget_s,
            message=(
                f"{len(corpus.train_files)} training files "
                f"({prepared.summary['train_chars']:,} chars), "
                f"{len(corpus.val_files)} validation files; {model.parameter_count():,} "
                f"parameters; {prepared.how}"
            ),
        )
    )


def training_data(repo: Path, prepared: Prepared, train_config: TrainConfig) -> TrainData:
    """The whole training text encoded, or, above `stream_above_chars`, a StreamedText over
    the training files (and the corpus's copy of the text is let go)."""
    corpus = prepared.corpus
    if not streams_from_files(corpus, train_config):
        return prepared.tokenizer.encode(corpus.train_text)
    chars = len(corpus.train_text)
    corpus.train_text = ""  # read again from the files, a piece at a time
    prepared.streamed = True
    return StreamedText(
        repo, corpus.train_files, prepared.tokenizer, chars, train_config.stream_piece_chars
    )


def deadline_for(train_config: TrainConfig, start: float) -> float:
    budget_s = train_config.minutes * 60
    return start + max(1.0, budget_s - min(EXPORT_RESERVE_S, 0.1 * budget_s))


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
    resolve_device(train_config.device)  # a missing GPU fails before the corpus is read
    deadline = deadline_for(train_config, time.monotonic())
    with store.training_lock():
        prepared = prepare(repo, store, model_config, train_config, selection, on_progress)
        model = prepared.model()
        report_start(prepared, model, train_config.minutes * 60, on_progress)
        data = training_data(repo, prepared, train_config)
        result = train(
            model, data, prepared.val_ids, train_config, deadline, on_progress, TRAIN_SPAN
        )
        return publish(repo, store, prepared, train_config, result, on_progress)


def publish(
    repo: Path,
    store: ModelStore,
    prepared: Prepared,
    train_config: TrainConfig,
    result: TrainResult,
    on_progress: ProgressFn,
    extra_meta: dict[str, Any] | None = None,
) -> RunResult:
    """Export the trained model (on the CPU), check it, score it against the current model and
    publish it, made current only if it is not worse."""
    model = result.model.to("cpu")
    on_progress(Progress("exporting", 0.95, EXPORT_RESERVE_S, result.val_bpc, "ONNX export"))
    train_texts = read_texts(repo, prepared.corpus.train_files)
    calibration = _refresh_retrieval(repo, store, train_texts, train_config)
    version = new_version()
    staging = store.staging_dir(version)
    try:
        export = _export(model, prepared, train_config, staging)
        verdict = _judge(prepared, train_config, export["served_bpc"])
        meta = {
            **_meta(repo, prepared, train_config, result, version),
            **export,
            **verdict,
            **_file_cache(staging, prepared.tokenizer, repo, prepared.corpus, train_config),
            "retrieval_calibration": asdict(calibration),
            **(extra_meta or {}),
        }
        meta["val_bpc"] = meta.pop("served_bpc")
        promoted, reason = verdict["promoted"], verdict["reason"]
        bundle = store.publish(staging, json.loads(json.dumps(meta)), make_current=promoted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after publish; cleans up a failure
    if promoted:
        message = f"model {bundle.version}: {reason}"
    else:
        message = f"model {bundle.version} kept aside, not better: {reason}"
    phase = "done" if promoted else "rejected"
    on_progress(Progress(phase, 1.0, 0.0, meta["val_bpc"], message, bundle.version))
    return RunResult(bundle, promoted, reason)


def _refresh_retrieval(
    repo: Path, store: ModelStore, train_texts: dict[str, str], train_config: TrainConfig
) -> Calibration:
    """The index and its calibration serve whether this model is promoted or not: the files are
    what they are now. Calibration uses the training files only (the held-out ones judge)."""
    if train_config.index:
        index_repository(repo).save(store.root / INDEX_FILE)
    calibration = calibrate(train_texts, RetrievalConfig())
    save_calibration(store.root / CALIBRATION_FILE, calibration)
    return calibration


def _export(
    model: CharLSTM, prepared: Prepared, train_config: TrainConfig, staging: Path
) -> dict[str, Any]:
    """The bundle's files written to `staging`; what meta.json says of them."""
    path = staging / MODEL_FILE
    export_onnx(model, path)
    parity = check_parity(model, path)
    weights = quantize_if_lossless(path, prepared.val_ids) if train_config.int8 else {}
    (staging / TOKENIZER_FILE).write_text(prepared.tokenizer.to_json())
    np.savez(
        staging / WEIGHTS_FILE, **{k: v.detach().numpy() for k, v in model.state_dict().items()}
    )
    # Scored as served (onnxruntime), as the previous model is in `_judge`.
    served_bpc = onnx_bits_per_char(path, prepared.val_ids)
    return {"served_bpc": served_bpc, "parity_max_abs_diff": parity, "weights": weights}


def _file_cache(
    staging: Path, tokenizer: CharTokenizer, repo: Path, corpus: Corpus, config: TrainConfig
) -> dict[str, Any]:
    """meta.json's `file_cache`: whether the model is served with the current file as its
    cache, chosen on lines of the held-out files (none when `cache_fit_lines` is 0 or they
    have no line to ask)."""
    if config.cache_fit_lines <= 0:
        return {}
    fit = CacheFitConfig(lines=config.cache_fit_lines, seed=config.seed)
    held_out = read_texts(repo, corpus.val_files)
    chosen = fit_file_cache(staging / MODEL_FILE, tokenizer, held_out, fit)
    return {META_KEY: chosen} if chosen["lines"] else {}  # no line to choose on: the default


def _judge(prepared: Prepared, train_config: TrainConfig, served_bpc: float) -> dict[str, Any]:
    """Promoted unless the current model scores better on the same held-out text."""
    previous = prepared.previous
    if previous is None:
        return {"previous": None, "promoted": True, "reason": "first model"}
    old_ids = previous.tokenizer.encode(prepared.corpus.val_text[: train_config.max_val_chars])
    old_bpc = onnx_bits_per_char(previous.model_path, old_ids)
    return {
        "previous": {"version": previous.version, "val_bpc": old_bpc},
        "promoted": served_bpc <= old_bpc + 1e-6,
        "reason": f"{served_bpc:.3f} bits/char vs {old_bpc:.3f} for model {previous.version} "
        "on the same held-out files",
    }


def _meta(
    repo: Path, prepared: Prepared, train_config: TrainConfig, result: TrainResult, version: str
) -> dict[str, Any]:
    """What meta.json records of the run itself."""
    previous = prepared.previous
    return {
        "version": version,
        "created_unix": time.time(),
        "completiond_version": __version__,
        "model": asdict(prepared.config),
        "train": asdict(train_config),
        "tokenizer": {"type": "char", "vocab_size": prepared.tokenizer.vocab_size},
        "corpus": prepared.summary,
        "repo": str(repo.resolve()),
        "train_val_bpc": result.val_bpc,
        "parameters": result.model.parameter_count(),
        "steps": result.steps,
        "train_seconds": result.seconds,
        "chars_per_second": result.chars_seen / max(1e-9, result.seconds),
        "device": result.device,
        "device_name": result.device_name,
        "precision": result.precision,
        "world_size": result.world_size,
        "replica_max_abs_diff": result.replica_max_abs_diff,
        "streamed": prepared.streamed,
        "warm_start_from": previous.version if prepared.fine_tunes and previous else None,
        "base": prepared.base,
    }
