"""Completion quality on held-out files, measured through the serving path.

Queries are real lines of files the model never trained on (the training run's own split by
file): the prefix is the whole file up to the cursor, the suffix the rest of the file after the
line, and the truth is the rest of the line. Two cursor modes:

- `typed`: after the indentation plus the first `typed_chars` characters of the line;
- `random`: a uniformly random point of the line's non-indent part, at least one character
  before its end.

Per mode: exact match (whitespace-token equality of the best candidate and the truth), edit
similarity (1 - Levenshtein / longer length), answer rate (a non-empty candidate at or above
`min_confidence`), calibration (exact match and "a prefix of the truth" per confidence bucket:
a confidence promises the latter, since a candidate may be the start of the line; precision vs
coverage for confidence thresholds) and latency (a cold read of the prefix's tail, as for a
document the daemon has not seen). Once per run, keystrokes saved: lines replayed character by
character from their indentation, accepting a suggestion (one keystroke) whenever it is a prefix
of what is left to type.

Torch-free, like the rest of the daemon: what is measured is what serves. `run_eval` evaluates
a store's current model (`completiond eval`); `evaluate` takes any `complete(Query)` function,
so baselines are measured by the same code (bench/quality.py).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from completiond.completion.queries import (
    MODES,
    TYPED_CHARS,
    EvalQuery,
    Line,
    build_queries,
    eligible_lines,
    exact_match,
    sample_lines,
    starts_truth,
)
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.corpus import read_texts
from completiond.core.errors import CompletiondError, CorpusError, InvalidRequest
from completiond.core.index import RepoIndex
from completiond.core.limits import DEFAULT_COMPLETION_CHARS, MAX_COMPLETION_CHARS
from completiond.daemon.decoder import Candidate, DecoderConfig, Query

CONFIDENCE_BUCKETS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # [a, b), the last one [0.9, 1]
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
POSITION_EDGES = (0, 5, 10, 20, 40, 80)  # cursor column in the line's non-indent part
LENGTH_EDGES = (0, 20, 40, 60, 80, 120)  # length of the line's non-indent part
LEFT_EDGES = (1, 5, 10, 20, 40, 80)  # characters left to predict

CompleteFn = Callable[[Query], list[Candidate]]
# Seconds, read before and after each request: its latency. A system that answers from elsewhere
# (bench/peers.py: a peer's batch, timed by the peer) passes a clock that its own times advance.
Clock = Callable[[], float]


@dataclass
class EvalConfig:
    queries: int = 500  # held-out lines sampled; each mode asks about the same lines
    modes: tuple[str, ...] = MODES
    seed: int = 0
    typed_chars: int = TYPED_CHARS  # `typed` cursor: after the indentation plus this many
    min_confidence: float = 0.0  # a candidate below this counts as no answer
    replay_lines: int = 60  # lines replayed keystroke by keystroke (0 = none; expensive)
    # In the replay, the chance that a right suggestion is accepted at a keystroke; otherwise the
    # user types its next character (types along it, as people who do not look often do).
    accept_rate: float = 1.0
    max_chars: int = DEFAULT_COMPLETION_CHARS  # candidate length cap, as the daemon's default
    examples: int = 12  # example completions in the report, per mode

    def validate(self) -> None:
        if self.queries < 1:
            raise InvalidRequest(f"queries must be at least 1, got {self.queries}")
        unknown = [m for m in self.modes if m not in MODES]
        if not self.modes or unknown:
            raise InvalidRequest(
                f"modes must be among {', '.join(MODES)}, got {', '.join(self.modes) or 'none'}"
            )
        if self.typed_chars < 0:
            raise InvalidRequest(f"typed_chars must be >= 0, got {self.typed_chars}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InvalidRequest(f"min_confidence must be within [0, 1], got {self.min_confidence}")
        if self.replay_lines < 0:
            raise InvalidRequest(f"replay_lines must be >= 0, got {self.replay_lines}")
        if not 0.0 < self.accept_rate <= 1.0:
            raise InvalidRequest(f"accept_rate must be within (0, 1], got {self.accept_rate}")
        if not 1 <= self.max_chars <= MAX_COMPLETION_CHARS:
            raise InvalidRequest(
                f"max_chars must be within [1, {MAX_COMPLETION_CHARS}], got {self.max_chars}"
            )


# --- metrics --------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each).

    One numpy row per character of the shorter string: substitutions and deletions come from the
    previous row, and insertions within the row are a running minimum of row[j] - j."""
    if len(a) > len(b):
        a, b = b, a
    if not a:
        return len(b)
    codes_b = np.frombuffer(b.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    steps = np.arange(len(b) + 1)
    row = steps.copy()
    for i, ch in enumerate(a, start=1):
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(row[1:] + 1, row[:-1] + (codes_b != ord(ch)))
        row = np.minimum.accumulate(new - steps) + steps
    return int(row[-1])


def edit_similarity(prediction: str, truth: str) -> float:
    """1 - Levenshtein / longer length: 1 for equal strings (two empty ones included)."""
    longest = max(len(prediction), len(truth))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, truth) / longest


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else math.nan


# --- results --------------------------------------------------------------------------------


@dataclass
class QueryResult:
    file: str
    line: int
    column: int
    line_length: int
    typed: str  # the line up to the cursor, indentation dropped (for examples)
    truth: str
    prediction: str  # "" when there was no answer
    confidence: float | None  # None when there was no answer
    exact: bool
    edit_similarity: float
    latency_s: float

    @property
    def accepted(self) -> bool:
        """A non-empty prefix of the truth (blanks between tokens aside): what a user keeps."""
        return starts_truth(self.prediction, self.truth)


@dataclass
class Bucket:
    label: str
    count: int
    exact_match: float  # nan when empty
    mean_confidence: float = math.nan
    accepted: float = math.nan  # a prefix of the truth (what a confidence promises); nan when empty


@dataclass
class ModeResult:
    mode: str
    results: list[QueryResult]

    @property
    def count(self) -> int:
        return len(self.results)

    @property
    def exact_match(self) -> float:
        return _mean([r.exact for r in self.results])

    @property
    def edit_similarity(self) -> float:
        return _mean([r.edit_similarity for r in self.results])

    @property
    def answer_rate(self) -> float:
        return _mean([r.confidence is not None for r in self.results])

    @property
    def latency_p50_ms(self) -> float:
        return 1000 * percentile([r.latency_s for r in self.results], 50)

    @property
    def latency_p99_ms(self) -> float:
        return 1000 * percentile([r.latency_s for r in self.results], 99)

    def calibration(self, edges: Sequence[float] = CONFIDENCE_BUCKETS) -> list[Bucket]:
        """Answered queries by confidence bucket: [a, b) each, the last one closed."""
        buckets = []
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            last = i == len(edges) - 2
            inside = [
                r
                for r in self.results
                if r.confidence is not None
                and lo <= r.confidence
                and (r.confidence <= hi if last else r.confidence < hi)
            ]
            buckets.append(
                Bucket(
                    f"[{lo:g}, {hi:g}{']' if last else ')'}",
                    len(inside),
                    _mean([r.exact for r in inside]),
                    _mean([r.confidence or 0.0 for r in inside]),
                    _mean([r.accepted for r in inside]),
                )
            )
        return buckets

    def precision_coverage(
        self, thresholds: Sequence[float] = THRESHOLDS
    ) -> list[tuple[float, float, float, float]]:
        """(t, share of all queries answered with confidence >= t, exact match among them,
        share of them that a user would accept at least in part: a prefix of the truth)."""
        rows = []
        for t in thresholds:
            kept = [r for r in self.results if r.confidence is not None and r.confidence >= t]
            rows.append(
                (
                    t,
                    len(kept) / max(1, self.count),
                    _mean([r.exact for r in kept]),
                    _mean([r.accepted for r in kept]),
                )
            )
        return rows

    def by_bucket(self, key: Callable[[QueryResult], int], edges: Sequence[int]) -> list[Bucket]:
        """Exact match by ranges of `key`: [e0, e1), ..., [e_last, inf)."""
        bounds = [*edges, math.inf]
        buckets = []
        for lo, hi in itertools.pairwise(bounds):
            inside = [r for r in self.results if lo <= key(r) < hi]
            label = f"{lo}+" if hi == math.inf else f"{lo}-{hi - 1}"
            buckets.append(Bucket(label, len(inside), _mean([r.exact for r in inside])))
        return buckets

    def summary(self) -> dict[str, float]:
        return {
            "queries": self.count,
            "exact_match": self.exact_match,
            "edit_similarity": self.edit_similarity,
            "answer_rate": self.answer_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
        }


@dataclass
class KeystrokeResult:
    lines: int = 0
    chars: int = 0  # characters after the indentation: the keystrokes without completion
    keystrokes: int = 0  # typed characters plus accepted suggestions
    accepted: int = 0  # suggestions accepted
    accepted_chars: int = 0  # characters they inserted
    latencies_s: list[float] = field(default_factory=list)

    @property
    def saved(self) -> float:
        """Share of keystrokes saved: 1 - keystrokes / characters."""
        return 1.0 - self.keystrokes / self.chars if self.chars else math.nan

    @property
    def latency_p50_ms(self) -> float:
        return 1000 * percentile(self.latencies_s, 50)


def _mean(values: Sequence[float | bool]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# --- evaluation -----------------------------------------------------------------------------


def _best(candidates: list[Candidate], min_confidence: float) -> Candidate | None:
    for candidate in candidates:
        if candidate.text and candidate.confidence >= min_confidence:
            return candidate
    return None


def _ask(
    complete: CompleteFn,
    config: EvalConfig,
    prefix: str,
    suffix: str,
    document: str = "",
    clock: Clock = time.perf_counter,
):
    query = Query(
        prefix=prefix,
        suffix=suffix,
        n=1,
        max_chars=config.max_chars,
        min_confidence=config.min_confidence,
        document=document,
    )
    start = clock()
    candidates = complete(query)
    elapsed = clock() - start
    return _best(candidates, config.min_confidence), elapsed


def run_queries(
    complete: CompleteFn,
    queries: Sequence[EvalQuery],
    config: EvalConfig,
    clock: Clock = time.perf_counter,
):
    results = []
    for q in queries:
        best, elapsed = _ask(complete, config, q.prefix, q.suffix, clock=clock)
        prediction = best.text if best else ""
        typed = q.prefix[q.prefix.rfind("\n") + 1 :].lstrip()
        results.append(
            QueryResult(
                q.line.file,
                q.line.number,
                q.column,
                q.line.length,
                typed,
                q.truth,
                prediction,
                best.confidence if best else None,
                exact_match(prediction, q.truth),
                edit_similarity(prediction, q.truth),
                elapsed,
            )
        )
    return results


def _accepts(config: EvalConfig, line: Line, pos: int) -> bool:
    """Whether the replay's user takes a right suggestion here: the same draw at the same place
    for every system compared, whatever each suggested before."""
    if config.accept_rate >= 1.0:
        return True
    draw = random.Random(f"{config.seed}:accept:{line.file}:{line.number}:{pos}").random()
    return draw < config.accept_rate


def keystrokes_saved(
    complete: CompleteFn,
    texts: dict[str, str],
    lines: Sequence[Line],
    config: EvalConfig,
    clock: Clock = time.perf_counter,
) -> KeystrokeResult:
    """Replay each line from its indentation: at every position ask for a completion; accept it
    (one keystroke) when it is a non-empty prefix of what is left (with probability
    `accept_rate`, seeded), else type one character.

    Each line is its own document, so after the first request (a cold read, as for a file the
    daemon has not seen) every keystroke is one more character on a warm state, as in an editor."""
    out = KeystrokeResult()
    for line in lines:
        text = texts[line.file]
        line_end = text.index("\n", line.start)
        body = text[line.start + line.indent : line_end].rstrip()
        head = text[: line.start + line.indent]
        suffix = text[line_end:]
        document = f"eval:{line.file}:{line.number}"
        pos = 0
        while pos < len(body):
            best, elapsed = _ask(complete, config, head + body[:pos], suffix, document, clock)
            out.latencies_s.append(elapsed)
            out.keystrokes += 1
            right = best is not None and body.startswith(best.text, pos)
            if right and _accepts(config, line, pos):
                out.accepted += 1
                out.accepted_chars += len(best.text)
                pos += len(best.text)
            else:
                pos += 1
        out.lines += 1
        out.chars += len(body)
    return out


@dataclass
class EvalReport:
    system: str
    config: EvalConfig
    files: list[str]
    eligible_lines: int
    modes: dict[str, ModeResult]
    keystrokes: KeystrokeResult | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Headline numbers, JSON-ready (nan as None)."""
        data: dict[str, object] = {
            "system": self.system,
            "config": asdict(self.config),
            "held_out_files": len(self.files),
            "eligible_lines": self.eligible_lines,
            "modes": {m: r.summary() for m, r in self.modes.items()},
            "notes": self.notes,
        }
        if self.keystrokes is not None:
            k = self.keystrokes
            data["keystrokes"] = {
                "lines": k.lines,
                "chars": k.chars,
                "keystrokes": k.keystrokes,
                "accepted": k.accepted,
                "saved": k.saved,
                "latency_p50_ms": k.latency_p50_ms,
            }
        return _json_ready(data)

    def to_markdown(self) -> str:
        out = self._summary_md() + self._keystrokes_md()
        for m, r in self.modes.items():
            out += _calibration_md(m, r)
        out += _bucket_tables(self.modes)
        out += self._examples_md()
        return "\n".join(out) + "\n"

    def _summary_md(self) -> list[str]:
        c = self.config
        out = [
            f"# Completion quality: {self.system}",
            "",
            f"{len(self.files)} held-out files, {self.eligible_lines} eligible lines (at least "
            f"{c.typed_chars + 1} characters after the indentation), "
            f"{max((r.count for r in self.modes.values()), default=0)} sampled (seed {c.seed}). "
            f"Cursor modes: `typed` = after the indentation + {c.typed_chars} characters; "
            "`random` = a uniform point of the line's non-indent part. Truth = the rest of the "
            f"line; best candidate only; min confidence {c.min_confidence:g}; max {c.max_chars} "
            "characters. Latency: one request reading the prefix cold, in-process.",
            "",
            *[f"- {note}" for note in self.notes],
            *([""] if self.notes else []),
            "## Summary",
            "",
            "| mode | queries | exact match | edit similarity | answer rate | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for m, r in self.modes.items():
            out.append(
                f"| {m} | {r.count} | {_pct(r.exact_match)} | {_pct(r.edit_similarity)} | "
                f"{_pct(r.answer_rate)} | {r.latency_p50_ms:.1f} | {r.latency_p99_ms:.1f} |"
            )
        return out

    def _keystrokes_md(self) -> list[str]:
        k = self.keystrokes
        if k is None or not k.lines:
            return []
        return [
            "",
            f"**Keystrokes saved: {_pct(k.saved)}** replaying {k.lines} lines from their "
            f"indentation ({k.chars} characters typed in {k.keystrokes} keystrokes; "
            f"{k.accepted} suggestions accepted, {k.accepted_chars} characters; "
            f"p50 {k.latency_p50_ms:.1f} ms per keystroke, warm)"
            + (
                f"; a right suggestion accepted at a keystroke {_pct(self.config.accept_rate)} "
                "of the time, else typed along."
                if self.config.accept_rate < 1.0
                else "; every right suggestion accepted."
            ),
        ]

    def _examples_md(self) -> list[str]:
        out = [
            "",
            "## Examples",
            "",
            "`=`: exact match.",
            "",
            "| mode | where | typed | completion | truth |",
            "|---|---|---|---|---|",
        ]
        for m, r in self.modes.items():
            for x in r.results[: self.config.examples]:
                mark = "=" if x.exact else ""
                out.append(
                    f"| {m} | {_cell(x.file)}:{x.line} | {_code(x.typed[-40:])} | "
                    f"{_code(x.prediction)} {mark} | {_code(x.truth)} |"
                )
        return out

    def write(self, directory: Path, plots: bool = True) -> Path:
        """report.md, report.json and (with matplotlib) PNG plots into `directory`; returns
        report.md's path. The Markdown and JSON are written before the plots are attempted."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "report.md"
        path.write_text(self.to_markdown())
        (directory / "report.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        if plots:
            self.plot(directory)
        return path

    def plot(self, directory: Path) -> list[Path]:
        """accuracy.png (by cursor position and line length), calibration.png, latency.png."""
        plt = _pyplot()
        return [
            self._plot_accuracy(directory, plt),
            self._plot_calibration(directory, plt),
            self._plot_latency(directory, plt),
        ]

    def _plot_accuracy(self, directory: Path, plt: Any) -> Path:
        """Exact match by cursor position and by line length."""
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (title, key, edges) in zip(
            axes,
            (
                ("by cursor position (chars after indentation)", _column, POSITION_EDGES),
                ("by line length (chars after indentation)", _length, LENGTH_EDGES),
            ),
            strict=True,
        ):
            labels: list[str] = []
            for m, r in self.modes.items():
                buckets = r.by_bucket(key, edges)
                labels = [b.label for b in buckets]
                xs = range(len(buckets))
                ys = [100 * b.exact_match for b in buckets]
                ax.plot(xs, ys, marker="o", label=m)
                for x, y, b in zip(xs, ys, buckets, strict=True):
                    if b.count:
                        ax.annotate(
                            f"n={b.count}",
                            (x, y),
                            fontsize=7,
                            xytext=(3, 3),
                            textcoords="offset points",
                        )
            ax.set_xticks(range(len(labels)), labels)
            ax.set_title(f"exact match {title}", fontsize=10)
            ax.set_ylabel("exact match (%)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(self.system)
        fig.tight_layout()
        return _save(fig, directory / "accuracy.png", plt)

    def _plot_calibration(self, directory: Path, plt: Any) -> Path:
        """Bucket mean confidence against how often accepting was right."""
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        for m, r in self.modes.items():
            pts = [b for b in r.calibration() if b.count]
            ax.plot(
                [b.mean_confidence for b in pts],
                [b.accepted for b in pts],
                marker="o",
                label=m,
            )
            for b in pts:
                ax.annotate(str(b.count), (b.mean_confidence, b.accepted), fontsize=7)
        ax.set_xlabel("confidence (bucket mean)")
        ax.set_ylabel("a prefix of the truth (accepting it is right)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"calibration: {self.system}", fontsize=10)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return _save(fig, directory / "calibration.png", plt)

    def _plot_latency(self, directory: Path, plt: Any) -> Path:
        """Histograms of per-request latency, cold and in the replay."""
        fig, ax = plt.subplots(figsize=(7, 4))
        series = {
            f"{m} (cold)": [1000 * x.latency_s for x in r.results] for m, r in self.modes.items()
        }
        if self.keystrokes is not None and self.keystrokes.latencies_s:
            series["replay, per keystroke (warm)"] = [1000 * s for s in self.keystrokes.latencies_s]
        everything = [v for values in series.values() for v in values]
        if everything:
            top = percentile(everything, 99.5) * 1.1 + 1e-6  # slower ones go in the last bin
            bins = np.linspace(0.0, top, 41)
            for label, values in series.items():
                if values:
                    ax.hist(
                        np.minimum(values, top * 0.9999),
                        bins=bins,
                        histtype="step",
                        linewidth=1.5,
                        density=True,
                        label=f"{label}, p50 {percentile(values, 50):.1f} ms",
                    )
            ax.legend()
        ax.set_xlabel("latency per request (ms)")
        ax.set_ylabel("share of requests (density)")
        ax.set_title(f"latency: {self.system}", fontsize=10)
        fig.tight_layout()
        return _save(fig, directory / "latency.png", plt)


def _column(r: QueryResult) -> int:
    return r.column


def _length(r: QueryResult) -> int:
    return r.line_length


def _left(r: QueryResult) -> int:
    return len(r.truth)


def _calibration_md(mode: str, r: ModeResult) -> list[str]:
    """Per confidence bucket, then per threshold, for one cursor mode."""
    out = [
        "",
        f"## Calibration, {mode}",
        "",
        "| confidence | answers | mean confidence | exact match | a prefix of the truth |",
        "|---|---:|---:|---:|---:|",
    ]
    for b in r.calibration():
        out.append(
            f"| {b.label} | {b.count} | {_num(b.mean_confidence)} "
            f"| {_pct(b.exact_match)} | {_pct(b.accepted)} |"
        )
    out += [
        "",
        "The answers above kept at each threshold. A client asking with that threshold "
        "may get a shorter suggestion instead where no whole line reaches it "
        "(`completiond eval --min-confidence T` measures that).",
        "",
        "| threshold | coverage | exact match when shown | a prefix of the truth |",
        "|---:|---:|---:|---:|",
    ]
    for t, coverage, precision, accepted in r.precision_coverage():
        out.append(f"| >= {t:g} | {_pct(coverage)} | {_pct(precision)} | {_pct(accepted)} |")
    return out


def _bucket_tables(modes: dict[str, ModeResult]) -> list[str]:
    out: list[str] = []
    for title, key, edges in (
        ("cursor position (characters after the indentation)", _column, POSITION_EDGES),
        ("line length (characters after the indentation)", _length, LENGTH_EDGES),
        ("characters left to predict", _left, LEFT_EDGES),
    ):
        out += [
            "",
            f"## Exact match by {title}",
            "",
            "| bucket | " + " | ".join(f"{m} (n)" for m in modes) + " |",
            "|---|" + "---:|" * len(modes),
        ]
        columns = [r.by_bucket(key, edges) for r in modes.values()]
        for row in zip(*columns, strict=True):
            cells = [f"{_pct(b.exact_match)} ({b.count})" for b in row]
            out.append(f"| {row[0].label} | " + " | ".join(cells) + " |")
    return out


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise CompletiondError(
            "the report's plots need matplotlib: pip install matplotlib "
            "(or pip install -e '.[dev]'); report.md was written"
        ) from exc
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str, limit: int = 60) -> str:
    if not text:
        return "·"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    text = _cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _json_ready(value):
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def evaluate(
    decoder_complete: CompleteFn,
    repo: Path,
    files: list[str],
    config: EvalConfig | None = None,
    system: str = "model",
    clock: Clock = time.perf_counter,
) -> EvalReport:
    """Measure `decoder_complete` on real lines of `files` (paths relative to `repo`), each
    request's latency read on `clock`."""
    config = config or EvalConfig()
    config.validate()
    texts = read_texts(repo, files)
    lines = eligible_lines(texts, config.typed_chars)
    if not lines:
        raise CorpusError(
            f"no line of the {len(files)} held-out files has {config.typed_chars + 1} or more "
            "characters after its indentation: nothing to evaluate"
        )
    sampled = sample_lines(lines, config.queries, config.seed)
    modes = {
        mode: ModeResult(
            mode,
            run_queries(
                decoder_complete, build_queries(texts, sampled, mode, config), config, clock
            ),
        )
        for mode in config.modes
    }
    keystrokes = (
        keystrokes_saved(decoder_complete, texts, sampled[: config.replay_lines], config, clock)
        if config.replay_lines
        else None
    )
    return EvalReport(system, config, sorted(texts), len(lines), modes, keystrokes)


def _retrieval_note(config: RetrievalConfig, decoding: DecoderConfig, files: int) -> str:
    if not config.enabled:
        return "retrieval off: the model alone"
    when = (
        "when nothing is found"
        if decoding.model_below <= 0
        else f"when the best copied line's confidence is below {decoding.model_below:g}"
    )
    start = (
        f", and for its confident start when no candidate reaches {decoding.start_below:g}"
        if decoding.start_below > 0
        else ""
    )
    return (
        f"retrieval from an index of the {files} training files and the file; the model {when}"
        f"{start}"
    )


def _typed_through_note(config: DecoderConfig) -> str:
    if config.declined_below <= 0:
        return "a suggestion typed through is offered again whole"
    return (
        f"a suggestion typed through below confidence {config.declined_below:g} is offered again "
        "as its first word only; the exact-match queries have no history"
    )


def held_out_retriever(
    repo: Path, train_files: Sequence[str], config: RetrievalConfig | None = None
) -> Retriever:
    """A retriever whose index has the training files only. The store's index has every file,
    and an evaluation that finds the held-out line itself in the index measures nothing."""
    return Retriever(RepoIndex.build(read_texts(repo, train_files).values()), config)


def run_eval(
    repo: Path,
    store_dir: Path,
    config: EvalConfig | None = None,
    report_dir: Path | None = None,
    retrieval: RetrievalConfig | None = None,
    decoder: DecoderConfig | None = None,
) -> EvalReport:
    """Evaluate the store's current model on its held-out files (the training run's split,
    recomputed: it depends on the paths only) and write the report to `report_dir` if given."""
    from completiond.core.bundle import ModelStore
    from completiond.core.corpus import build_corpus
    from completiond.daemon.model_slot import ModelSlot, calibrated

    config = config or EvalConfig()
    config.validate()
    store = ModelStore(store_dir)
    served = ModelSlot(store, decoder_config=decoder).load_current()
    corpus = build_corpus(repo)
    if not corpus.val_files:
        raise CorpusError(f"{repo} has a single trainable file: no held-out file to evaluate on")
    # The store's confidence weights were fitted on training files only: fair to use here.
    retrieval = calibrated(store, retrieval or RetrievalConfig())
    retriever = held_out_retriever(repo, corpus.train_files, retrieval)
    served.decoder.retriever = retriever
    meta = served.bundle.meta
    report = evaluate(
        served.decoder.complete,
        repo,
        corpus.val_files,
        config,
        system=f"model {served.version}",
    )
    model = meta.get("model", {})
    report.notes.append(
        f"model {served.version}: {model.get('num_layers', '?')}x{model.get('hidden_size', '?')} "
        f"character LSTM, validation {meta.get('val_bpc', math.nan):.3f} bits/char"
    )
    report.notes.append(
        _retrieval_note(retriever.config, served.decoder.config, len(corpus.train_files))
    )
    report.notes.append(_typed_through_note(served.decoder.config))
    if meta.get("corpus", {}).get("fingerprint") not in (None, corpus.fingerprint):
        report.notes.append(
            "the repository changed since this model was trained: the held-out files are the "
            "same by path (the split hashes paths), their contents may not be"
        )
    if report_dir is not None:
        report.write(report_dir)
    return report
