"""The retriever's confidence model, fitted to one repository.

Repositories repeat themselves to very different degrees (generated-looking JavaScript far more
than a Python library), so weights fitted once on one corpus make confidences too low or too
high elsewhere, and a threshold such as the editors' 0.6 would mean different things. Every
training run therefore refits the logistic model of `retrieval.features` on the repository
itself: the index is built from most training files, real lines of the others (a band of the
path hash next to the held-out files, which stay untouched for evaluation) are asked in both
cursor modes, and each candidate found is labelled right or wrong (exact match with the rest of
the line). The fit is pulled towards DEFAULT_WEIGHTS (an L2 penalty around them), so a small
repository with few examples keeps nearly the defaults; with too few right candidates the
defaults are kept as they are. The result is `<store>/retrieval.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from completiond.core.durable import write_text_atomically
from completiond.core.files import split_files
from completiond.core.index import RepoIndex

from .queries import exact_match, sampled_queries, starts_truth
from .retrieval import DEFAULT_WEIGHTS, Found, RetrievalConfig, Retriever, features

CALIBRATION_FILE = "retrieval.json"

Labelled = list[tuple[Found, bool]]
Asked = list[tuple[str, Labelled]]  # per query: its cursor mode, its candidates labelled


@dataclass
class CalibrationConfig:
    lines: int = 300  # lines asked, in each cursor mode
    band: float = 0.25  # training files whose path hash is below this are asked, not indexed
    prior: float = 20.0  # strength of the pull towards DEFAULT_WEIGHTS
    min_right: int = 20  # fewer right candidates than this: keep DEFAULT_WEIGHTS
    seed: int = 0


@dataclass
class Calibration:
    weights: tuple[float, ...]
    fitted: bool  # False: too few examples, the defaults
    lines: int  # lines asked (all modes)
    candidates: int  # labelled candidates
    right: int  # of them exactly right


def right(found: Found, truth: str) -> bool:
    """A whole rest of line is right when it is the truth; a shared start when the truth starts
    with it (accepting it saves those keystrokes)."""
    return starts_truth(found.text, truth) if found.partial else exact_match(found.text, truth)


def label(retriever: Retriever, texts: dict[str, str], lines: int, seed: int = 0) -> Asked:
    """For up to `lines` sampled lines of `texts` in each cursor mode: every candidate the
    retriever finds, right or wrong."""
    return [
        (q.mode, [(f, right(f, q.truth)) for f in retriever.find(q.prefix, q.suffix)])
        for q in sampled_queries(texts, lines, seed)
    ]


def fit(
    labelled: Labelled,
    document_weight: float,
    prior_weights: Sequence[float] = DEFAULT_WEIGHTS,
    prior: float = 0.0,
) -> np.ndarray:
    """The retriever's weights fitted to labelled candidates (`fit_logistic`)."""
    x = np.array([features(f, document_weight) for f, _ in labelled], dtype=float)
    y = np.array([ok for _, ok in labelled], dtype=float)
    return fit_logistic(x, y, prior_weights, prior)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, prior_weights: Sequence[float], prior: float = 0.0
) -> np.ndarray:
    """Logistic regression by Newton's method, penalised by prior * |w - prior_weights|^2 (at
    least 1: with thousands of examples that is negligible, and it keeps the steps well posed
    when features are collinear, as in a repository where every line is found the same way)."""
    w0 = np.asarray(prior_weights, dtype=float)
    strength = max(prior, 1.0)
    w = w0.copy()
    for _ in range(50):
        p = 0.5 * (1.0 + np.tanh(0.5 * (x @ w)))  # the logistic function, without overflow
        gradient = x.T @ (p - y) + strength * (w - w0)
        hessian = (x.T * (p * (1 - p))) @ x + strength * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def calibrate(
    texts: dict[str, str], retrieval: RetrievalConfig, config: CalibrationConfig | None = None
) -> Calibration:
    """Fit the confidence model to a repository's training files (by path)."""
    config = config or CalibrationConfig()
    indexed, asked = split_files(sorted(texts), config.band)
    if not asked or not indexed:
        return Calibration(retrieval.weights, False, 0, 0, 0)
    retriever = Retriever(RepoIndex.build(texts[f] for f in indexed), retrieval)
    queries = label(retriever, {f: texts[f] for f in asked}, config.lines, config.seed)
    labelled = [item for _, candidates in queries for item in candidates]
    lines = len(queries)
    right = sum(ok for _, ok in labelled)
    if right < config.min_right:
        return Calibration(retrieval.weights, False, lines, len(labelled), right)
    weights = fit(labelled, retrieval.document_weight, retrieval.weights, config.prior)
    return Calibration(
        tuple(round(float(w), 4) for w in weights), True, lines, len(labelled), right
    )


# The features `retrieval.features` computes; a file records the format it was fitted with.
# Format 1 had no weight for the end of the name being typed (`Found.word`): it gets the default.
FORMAT = 2
_UPGRADES = {1: lambda weights: weights + DEFAULT_WEIGHTS[-1:]}


def save_calibration(path: Path, calibration: Calibration) -> None:
    """Write atomically (the daemon may be reading it)."""
    data = {"format": FORMAT, **asdict(calibration)}
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def load_calibration(path: Path) -> Calibration | None:
    """None when missing or unusable (the defaults apply): never a reason not to serve."""
    try:
        data = json.loads(path.read_text())
        weights = tuple(float(w) for w in data["weights"])
        file_format = int(data.get("format", 1))  # format 1 files had no format field
        if file_format in _UPGRADES:
            weights = _UPGRADES[file_format](weights)
        if len(weights) != len(DEFAULT_WEIGHTS):
            return None
        return Calibration(
            weights,
            bool(data["fitted"]),
            int(data["lines"]),
            int(data["candidates"]),
            int(data["right"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
