"""Whether a repository's model writes right lines more often with the current file as its cache.

The file cache (completion/file_cache.py) turns a model that forgets names into one that copies
them, and on most code the model alone then writes many more right lines; but a model that
already knows its repository's patterns well can be led astray by the file (figures: the
README's "How good it is"). So every training run chooses: on lines of its
held-out files (the ones that already choose its best weights: lines it trained on it would
complete from memory, and a cache looks useless there), the exported model decodes each line
greedily with each weight of `CacheFitConfig.kappas` (0: no cache) and the weight right most
often is recorded in the bundle's meta (`file_cache`), ties going to the earlier one. The daemon
serves the model with that weight (daemon/model_slot.py).

Greedy decoding, through onnxruntime as served and a cold read of the prefix, stands in for the
daemon's beam search at a fraction of the cost: it ranked the weights as the beam search did on
every corpus of bench/quality.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from completiond.completion.file_cache import NOWHERE, FileCache, FileCacheConfig
from completiond.completion.queries import exact_match, sampled_queries
from completiond.core.tokenizer import UNK_ID, CharTokenizer


@dataclass
class CacheFitConfig:
    # Weights tried, the one preferred in a tie first: the cache, which paid on most corpora.
    kappas: tuple[float, ...] = (4.0, 0.0)
    lines: int = 100  # lines asked, in each cursor mode
    cold_chars: int = 512  # of the prefix the model reads, as the daemon reads a new document
    max_chars: int = 80  # longest line written
    seed: int = 0


class _Greedy:
    """The exported model writing one line at a time, most likely character first."""

    def __init__(self, model_path: Path, tokenizer: CharTokenizer) -> None:
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.newline = tokenizer.newline_id
        layers, _, hidden = self.session.get_inputs()[1].shape
        self.zero = np.zeros((layers, 1, hidden), np.float32)  # h and c before any character

    def read(self, prefix: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Log-probabilities [V] of the character after `prefix` and the state there."""
        h = self.zero
        ids = self.tokenizer.encode(prefix or "\n")[None, :]  # at a file's start: a new line
        logp, h, c = self.session.run(None, {"ids": ids, "h": h, "c": np.zeros_like(h)})
        return logp[0, -1], (h, c)

    def line(
        self,
        logp: np.ndarray,
        state: tuple[np.ndarray, np.ndarray],
        cache: FileCache | None,
        max_chars: int,
    ) -> str:
        written: list[int] = []
        pointer = cache.start() if cache is not None else NOWHERE
        h, c = state
        for _ in range(max_chars):
            logp = (cache.mix(logp, pointer) if cache is not None else logp).copy()
            logp[UNK_ID] = -np.inf  # never shown
            char = int(np.argmax(logp))
            if char == self.newline:
                break
            written.append(char)
            if cache is not None:
                pointer = cache.advance(pointer, np.array(written, np.int64))
            step = np.array([[char]], np.int64)
            out, h, c = self.session.run(None, {"ids": step, "h": h, "c": c})
            logp = out[0, -1]
        return self.tokenizer.decode(written)


def fit_file_cache(
    model_path: Path,
    tokenizer: CharTokenizer,
    texts: dict[str, str],
    config: CacheFitConfig | None = None,
) -> dict[str, Any]:
    """The weight chosen for this model on lines of `texts` (files it did not train on) and what
    each weight scored: the `file_cache` entry of the bundle's meta."""
    config = config or CacheFitConfig()
    greedy = _Greedy(model_path, tokenizer)
    queries = sampled_queries(texts, config.lines, config.seed)
    right = dict.fromkeys(config.kappas, 0)
    for q in queries:
        logp, state = greedy.read(q.prefix[-config.cold_chars :])
        for kappa in config.kappas:
            cache = None
            if kappa > 0:
                cache = FileCache(q.prefix, q.suffix, tokenizer, FileCacheConfig(kappa=kappa))
            right[kappa] += exact_match(greedy.line(logp, state, cache, config.max_chars), q.truth)
    best = max(config.kappas, key=lambda k: (right[k], -config.kappas.index(k)))
    return {
        "kappa": best,
        "lines": len(queries),
        "exact": {f"{k:g}": right[k] / max(1, len(queries)) for k in config.kappas},
        "config": asdict(config),
    }
