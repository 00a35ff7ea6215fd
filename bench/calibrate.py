"""The retriever's confidence model: the defaults, per-repository fits, and how well they hold.

For each corpus (held out by file exactly as `completiond train` splits it), the index is built
from the training files only, and every candidate the retriever finds for real held-out lines
(both cursor modes of `completiond eval`) is labelled right or wrong (exact match with the rest
of the line). Three sets of weights are then judged on every corpus: a plain fit on the first
corpus' held-out lines (what DEFAULT_WEIGHTS in completion/retrieval.py came from), the defaults in
use, and the per-repository weights a training run fits (completion/calibration.py: on the
repository's own training files, never the held-out ones). For each: exact match of the most
confident candidate, the calibration table (exact-match rate per confidence bucket) and
precision/coverage per threshold. No model is trained: this measures retrieval alone, in about
a minute.

    .venv/bin/python bench/calibrate.py                         # python and c
    .venv/bin/python bench/calibrate.py --corpora js,python,c   # js (and ts) need npm, pypi PyPI

Paste the printed weights into DEFAULT_WEIGHTS to adopt a refit of the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from quality import CORPORA, corpus_names  # bench/ is on the path when this runs

from completiond.completion.calibration import Asked, calibrate, fit, label
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.corpus import build_corpus, read_texts
from completiond.core.index import RepoIndex
from completiond.evaluation.evaluate import MODES


def label_held_out(
    repo: Path, queries: int, seed: int, config: RetrievalConfig
) -> tuple[Asked, str]:
    """The held-out lines' candidates, against an index of the training files only."""
    corpus = build_corpus(repo)
    start = time.monotonic()
    index = RepoIndex.build(read_texts(repo, corpus.train_files).values())
    built = time.monotonic() - start
    held_out = read_texts(repo, corpus.val_files)
    start = time.monotonic()
    out = label(Retriever(index, config), held_out, queries, seed)
    asked = len(out)
    note = (
        f"{len(corpus.train_files)} training files indexed ({len(index.text):,} chars, "
        f"{len(index.positions):,} token starts) in {built:.1f} s; {len(held_out)} held-out "
        f"files; retrieval {1000 * (time.monotonic() - start) / max(1, asked):.2f} ms per query"
    )
    return out, note


def report(name: str, labelled: Asked, retriever: Retriever) -> None:
    edges = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.01)
    best: dict[str, list[tuple[float, bool]]] = {m: [] for m in MODES}
    for mode, candidates in labelled:
        scored = [(retriever.confidence(f), ok) for f, ok in candidates if not f.partial]
        best[mode].append(max(scored, key=lambda s: s[0]) if scored else (0.0, False))
    print(f"\n{name}: exact match of the most confident whole line (no model)")
    for mode, picks in best.items():
        oracle = np.mean(
            [any(ok and not f.partial for f, ok in c) for m, c in labelled if m == mode]
        )
        em = np.mean([ok for _, ok in picks])
        print(f"  {mode}: {100 * em:.1f}% (truth among the candidates: {100 * oracle:.1f}%)")
    picks = [p for ps in best.values() for p in ps]
    print("  confidence bucket | candidates | exact match")
    for lo, hi in itertools.pairwise(edges):
        inside = [ok for c, ok in picks if lo <= c < hi and c > 0]
        rate = f"{100 * np.mean(inside):.0f}%" if inside else "-"
        print(f"  [{lo:.1f}, {min(hi, 1):.1f}) | {len(inside)} | {rate}")
    print("  threshold | shown | exact among shown")
    for t in (0.2, 0.3, 0.4, 0.5, 0.6):
        shown = [ok for c, ok in picks if c >= t]
        rate = f"{100 * np.mean(shown):.0f}%" if shown else "-"
        print(f"  {t:.1f} | {100 * len(shown) / len(picks):.1f}% | {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", default="python,c", help="fit on the first, check on all")
    parser.add_argument("--queries", type=int, default=400, help="held-out lines per corpus")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = corpus_names(parser, args.corpora)
    config = RetrievalConfig()
    scratch = Path(tempfile.mkdtemp(prefix="completiond-calibrate-"))
    try:
        data, own = {}, {}
        for name in names:
            repo = CORPORA[name][1](scratch / name)
            data[name], note = label_held_out(repo, args.queries, args.seed, config)
            own[name] = calibrate(read_texts(repo, build_corpus(repo).train_files), config)
            print(f"{name}: {note}; per-repository fit: {own[name]}")
        flat = [item for _, candidates in data[names[0]] for item in candidates]
        weights = tuple(fit(flat, config.document_weight))
        print(f"\nweights fitted on {names[0]}: ({', '.join(f'{w:.3f}' for w in weights)})")
        print(f"in use (DEFAULT_WEIGHTS): {config.weights}")
        for name in names:
            for how, w in (
                (f"fitted on {names[0]}'s held-out lines", weights),
                ("DEFAULT_WEIGHTS", config.weights),
                ("per-repository, as a training run fits them", own[name].weights),
            ):
                report(f"{name}, {how}", data[name], Retriever(None, replace(config, weights=w)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
