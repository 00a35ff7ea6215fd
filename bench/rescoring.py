"""Does the model rank retrieval's candidates better than retrieval does? And what is within reach?

On a corpus of quality.py (split by file as training splits it), a product model is trained
(or an existing store reused), then for held-out lines in both cursor modes every whole line
retrieval finds is scored by the model in one batched call (`line_logprobs`). Printed:

- the ceiling: the share of lines whose truth is among retrieval's lines, among the model's
  beams, among both, and among lines the beam writes on from retrieved starts (copy, then write);
- top-1 exact match of retrieval's order against the order of rescored confidences, with the
  logistic weights fitted on one half of the lines and measured on the other (two folds);
- the time of one batched scoring call.

    .venv/bin/python bench/rescoring.py --corpus python --max-steps 1200 --store bench/out/rs-py

The product does not rescore: on the stdlib corpus the rescored order was no better than
retrieval's calibrated one (the figures are in issue 18's note); this script is where to try again
with a stronger model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from quality import CORPORA  # bench/ is on the path when this runs

from completiond.completion.calibration import fit_logistic, right
from completiond.completion.file_cache import FileCache, FileCacheConfig
from completiond.completion.queries import (
    MODES,
    Cursors,
    build_queries,
    eligible_lines,
    exact_match,
    sample_lines,
)
from completiond.completion.retrieval import RetrievalConfig
from completiond.completion.retrieval import features as retrieval_features
from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus, read_texts
from completiond.daemon.decoder import Query
from completiond.daemon.model_slot import ModelSlot, calibrated
from completiond.evaluation.evaluate import held_out_retriever
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig

MAX_CHARS = 80
State = tuple[np.ndarray, np.ndarray]  # h, c: float32 [layers, batch, hidden]
RunFn = Callable[[np.ndarray, State], tuple[np.ndarray, State]]  # ids [B,T] -> log-probs [B,T,V]

RELATIVE_FLOOR = -30.0  # nats below the best candidate: beyond this the model has no preference
MEAN_FLOOR = -6.0  # nats per character
CONFIDENCE_EDGE = 1e-4  # retrieval confidences are clipped to [edge, 1 - edge] for their log-odds


@dataclass(frozen=True)
class RescoreWeights:
    """Logistic weights over `features`: bias, retrieval's log-odds, relative and mean
    log-probability. (0, 1, 0, 0) keeps retrieval's confidence."""

    weights: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)


def line_logprobs(
    run: RunFn,
    logits: np.ndarray,
    state: State,
    lines: Sequence[np.ndarray],
    ends: Sequence[bool],
    newline: int,
    cache: FileCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(log-probability [K], characters scored [K]) of each line of character ids after the
    prefix whose next-character log-probabilities are `logits` [1,V] and state `state`; a line
    that `ends` is scored with its newline. One engine call, the lines padded to the longest
    (a recurrent step never sees what follows it, so padding changes nothing before it). With
    a `cache`, each character's probability is mixed with the file's as the beams mix it."""
    k = len(lines)
    lengths = np.array([len(line) for line in lines])
    ids = np.zeros((k, int(lengths.max())), np.int64)
    for row, line in enumerate(lines):
        ids[row, : len(line)] = line
    batch_state = (np.repeat(state[0], k, axis=1), np.repeat(state[1], k, axis=1))
    out, _ = run(ids, batch_state)  # [K,T,V]: row t predicts character t + 1
    if cache is not None:
        return _cached_logprobs(logits, out, cache, lines, ends, newline), lengths + np.array(ends)
    first = logits[0, ids[:, 0]]
    later = np.take_along_axis(out[:, :-1, :], ids[:, 1:, None], axis=2)[..., 0]
    per_char = np.concatenate((first[:, None], later), axis=1)
    within = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    total = np.where(within, per_char, 0.0).sum(axis=1)
    closing = out[np.arange(k), lengths - 1, newline]
    ended = np.asarray(ends, dtype=bool)
    return total + np.where(ended, closing, 0.0), lengths + ended


def _cached_logprobs(
    logits: np.ndarray,
    out: np.ndarray,
    cache: FileCache,
    lines: Sequence[np.ndarray],
    ends: Sequence[bool],
    newline: int,
) -> np.ndarray:
    """[K] log-probabilities of the lines with the file cache mixed in, character by character
    (a Python loop: a measurement, not the serving path)."""
    totals = np.zeros(len(lines))
    for row, (line, ended) in enumerate(zip(lines, ends, strict=True)):
        pointer = cache.start()
        predicted = logits[0]
        for t, char in enumerate(line):
            totals[row] += cache.mix(predicted, pointer)[char]
            pointer = cache.advance(pointer, line[: t + 1])
            predicted = out[row, t]
        if ended:
            totals[row] += cache.mix(predicted, pointer)[newline]
    return totals


def features(
    confidences: Sequence[float], logprobs: np.ndarray, scored_chars: np.ndarray
) -> np.ndarray:
    """[K,4]: 1, retrieval's log-odds, log-probability relative to the best candidate's,
    mean log-probability per character (both floored: far below, differences stop meaning)."""
    conf = np.clip(np.asarray(confidences, dtype=float), CONFIDENCE_EDGE, 1 - CONFIDENCE_EDGE)
    relative = np.maximum(logprobs - logprobs.max(), RELATIVE_FLOOR)
    mean = np.maximum(logprobs / np.maximum(scored_chars, 1), MEAN_FLOOR)
    return np.column_stack((np.ones(len(conf)), np.log(conf / (1 - conf)), relative, mean))


def rescored(x: np.ndarray, weights: RescoreWeights) -> np.ndarray:
    """[K] the new confidences."""
    z = x @ np.asarray(weights.weights)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="python", choices=sorted(CORPORA))
    parser.add_argument("--store", type=Path, required=True, help="reused when it has a model")
    parser.add_argument("--max-steps", type=int, default=1200)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--base-cache", type=Path, help="XDG_CACHE_HOME: start from its base")
    parser.add_argument("--dump", type=Path, help="write each query's features and labels (.npz)")
    args = parser.parse_args()
    if args.base_cache:
        os.environ["XDG_CACHE_HOME"] = str(args.base_cache.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        repo = CORPORA[args.corpus][1](Path(tmp) / "repo")
        run(repo, args)


def run(repo: Path, args: argparse.Namespace) -> None:
    corpus = build_corpus(repo)
    store = ModelStore(args.store)
    if store.current_version() is None:
        train_repository(
            repo,
            store,
            ModelConfig(),
            TrainConfig(minutes=args.minutes, max_steps=args.max_steps, threads=args.threads),
        )
    served = ModelSlot(store).load_current()
    decoder, tok = served.decoder, served.bundle.tokenizer
    retriever = held_out_retriever(repo, corpus.train_files, calibrated(store, RetrievalConfig()))
    texts = read_texts(repo, corpus.val_files)
    cursors = Cursors()
    sampled = sample_lines(eligible_lines(texts, cursors.typed_chars), args.lines, 0)
    rows: list[tuple[np.ndarray, np.ndarray]] = []  # per query: features [K,4], right [K]
    lists: list[tuple[np.ndarray, np.ndarray]] = []  # per query: list_features [K,F], right [K]
    cached_rows: list[tuple[np.ndarray, np.ndarray]] = []  # as rows, lists: the file cache mixed
    cached_lists: list[tuple[np.ndarray, np.ndarray]] = []
    ceiling = {"retrieval": 0, "beams": 0, "both": 0, "copy then write": 0}
    times: list[float] = []
    asked = 0
    for mode in MODES:
        for q in build_queries(texts, sampled, mode, cursors):
            asked += 1
            wholes = [f for f in retriever.find(q.prefix, q.suffix) if not f.partial]
            wholes = [f for f in wholes if f.text.strip()][:16]
            logits, state = decoder.states.read(q.prefix, "")
            beams = decoder._beam_search(logits, state, Query(prefix=q.prefix, max_chars=MAX_CHARS))
            beam_texts = [tok.decode(ids) for ids, _ in beams]
            in_retrieval = any(right(f, q.truth) for f in wholes)
            in_beams = any(exact_match(t, q.truth) for t in beam_texts)
            ceiling["retrieval"] += in_retrieval
            ceiling["beams"] += in_beams
            ceiling["both"] += in_retrieval or in_beams
            written = continued(decoder, q.prefix, [f.text for f in wholes[:4]], tok)
            ceiling["copy then write"] += (
                in_retrieval or in_beams or any(exact_match(t, q.truth) for t in written)
            )
            if not wholes:
                continue
            ids = [tok.encode(f.text[:MAX_CHARS]) for f in wholes]
            ends = [len(f.text) <= MAX_CHARS for f in wholes]
            start = time.perf_counter()
            logp, chars = line_logprobs(served.engine.run, logits, state, ids, ends, tok.newline_id)
            times.append(time.perf_counter() - start)
            conf = [retriever.confidence(f) for f in wholes]
            x = features(conf, logp, chars)
            y = np.array([right(f, q.truth) for f in wholes])
            rows.append((x, y))
            weight = retriever.config.document_weight
            own = [retrieval_features(f, weight) for f in wholes]
            lists.append((list_features(own, x), y))
            file = FileCache(q.prefix, q.suffix, tok, FileCacheConfig())
            cached, _ = line_logprobs(
                served.engine.run, logits, state, ids, ends, tok.newline_id, file
            )
            cached_x = features(conf, cached, chars)
            cached_rows.append((cached_x, y))
            cached_lists.append((list_features(own, cached_x), y))
    report(rows, ceiling, times, asked)
    report_listwise(lists)
    print("\nThe model's probabilities with the file cache mixed in, as its beams mix it:")
    print(f"| rescored (2-fold) | {100 * two_fold(cached_rows):.1f}% |")
    report_listwise(cached_lists)
    if args.dump:
        np.savez(args.dump, *[np.column_stack((x, y)) for x, y in rows])


def continued(decoder, prefix: str, starts: list[str], tok) -> list[str]:
    """Copy, then write: for each retrieved line, its first tokens copied (up to half of it),
    then the model's best line from there."""
    out = []
    for text in starts:
        cut = text[: max(1, len(text) // 2)]
        cut = cut[: cut.rfind(" ") + 1] or cut
        logits, state = decoder.states.read(prefix + cut, "")
        beams = decoder._beam_search(logits, state, Query(prefix=prefix + cut, max_chars=MAX_CHARS))
        out.extend(cut + tok.decode(ids) for ids, _ in beams[:2])
    return out


def list_features(retrieval: list[list[float]], rescoring: np.ndarray) -> np.ndarray:
    """[K,F] for the listwise ranker: retrieval's own features (its bias dropped: a constant
    does not change an order), the candidate's place in retrieval's order, its log-odds below
    the top candidate's, then the model's two (relative and mean log-probability). The model's
    columns are the last MODEL_COLUMNS."""
    own = np.asarray(retrieval, dtype=float)[:, 1:]
    place = np.log1p(np.arange(len(own), dtype=float))[:, None]
    odds = rescoring[:, 1:2]
    return np.column_stack((own, place, odds - odds.max(), rescoring[:, 2:]))


MODEL_COLUMNS = 2


def fit_listwise(rows: list[tuple[np.ndarray, np.ndarray]], penalty: float = 1.0) -> np.ndarray:
    """Weights of a conditional logit: P(candidate) = softmax over its query's candidates of
    x @ w, fitted to the log-probability of the right candidates (queries with none right say
    nothing about the order), L2-penalised. Plain Newton: the problem is convex and small."""
    used = [(x, y.astype(float)) for x, y in rows if y.any()]
    w = np.zeros(used[0][0].shape[1])
    for _ in range(30):
        gradient = penalty * w
        hessian = penalty * np.eye(len(w))
        for x, y in used:
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            q = y * p / (y * p).sum()  # the right candidates' share of the mass
            gradient += x.T @ (p - q)
            mean_p, mean_q = p @ x, q @ x
            hessian += (x.T * p) @ x - np.outer(mean_p, mean_p)
            hessian -= (x.T * q) @ x - np.outer(mean_q, mean_q)
        step = np.linalg.solve(hessian + 1e-6 * np.eye(len(w)), gradient)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def listwise_top1(rows: list[tuple[np.ndarray, np.ndarray]], w: np.ndarray) -> float:
    return sum(bool(y[int(np.argmax(x @ w))]) for x, y in rows) / max(1, len(rows))


def report_listwise(lists: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Top-1 of a listwise ranker fitted on one half of the queries and measured on the other
    (two folds), with retrieval's features alone and with the model's added."""
    half = len(lists) // 2
    folds = (lists[:half], lists[half:])
    print("\n| listwise ranker (2-fold) | top-1 exact (of queries with lines) |\n|---|---:|")
    for name, columns in (("retrieval's features", -MODEL_COLUMNS), ("+ the model's", None)):
        hits = 0.0
        for fit_on, test_on in (folds, folds[::-1]):
            cut = [(x[:, :columns], y) for x, y in fit_on]
            w = fit_listwise(cut)
            hits += listwise_top1([(x[:, :columns], y) for x, y in test_on], w) * len(test_on)
        print(f"| {name} | {100 * hits / max(1, len(lists)):.1f}% |")


def top1(rows: list[tuple[np.ndarray, np.ndarray]], weights: RescoreWeights) -> float:
    hits = sum(bool(y[int(np.argmax(rescored(x, weights)))]) for x, y in rows)
    return hits / max(1, len(rows))


def two_fold(rows: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Top-1 of the logistic rescoring fitted on one half of the queries and measured on the
    other, both ways (the fitted weights printed)."""
    half = len(rows) // 2
    folds = (rows[:half], rows[half:])
    start = RescoreWeights().weights
    hits = 0.0
    for fit_on, test_on in (folds, folds[::-1]):
        x = np.concatenate([x for x, _ in fit_on])
        y = np.concatenate([y for _, y in fit_on]).astype(float)
        w = RescoreWeights(tuple(round(float(v), 3) for v in fit_logistic(x, y, start)))
        print(f"  fitted weights: {w.weights}")
        hits += top1(test_on, w) * len(test_on)
    return hits / max(1, len(rows))


def report(rows, ceiling: dict[str, int], times: list[float], asked: int) -> None:
    print(f"{asked} queries; {len(rows)} with retrieved lines\n")
    print("| truth among | share of queries |\n|---|---:|")
    for name, count in ceiling.items():
        print(f"| {name} | {100 * count / asked:.1f}% |")
    print("\n| order | top-1 exact (of queries with lines) |\n|---|---:|")
    print(f"| retrieval's confidence | {100 * top1(rows, RescoreWeights()):.1f}% |")
    print(f"| rescored (2-fold) | {100 * two_fold(rows):.1f}% |")
    ms = np.array(times) * 1000
    print(f"\nscoring call: p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms")


if __name__ == "__main__":
    main()
