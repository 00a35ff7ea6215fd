"""Retrieval alone, under different `RetrievalConfig` settings, side by side: exact match in both
cursor modes and keystrokes saved, with the same code path as `completiond eval` (its queries,
its keystroke replay, the decoder's post-processing) but no model, so one setting is judged in
seconds. Each setting gets its own per-repository calibration, as a training run would fit it.

The index holds the training files only; the held-out files are asked. This is where the rules
that pick between whole lines and shared starts (`shared_below`), and the reach of shape matches
(`shape_lines`), were chosen.

    .venv/bin/python bench/retrieval_rules.py                                  # defaults only
    .venv/bin/python bench/retrieval_rules.py --set shared_below=0.2 shape_lines=0
    .venv/bin/python bench/retrieval_rules.py --corpora python,c,js --set shared_below=0
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

from quality import CORPORA, corpus_names  # bench/ is on the path when this runs

from completiond.completion.calibration import calibrate
from completiond.completion.retrieval import RetrievalConfig
from completiond.core.corpus import build_corpus, read_texts
from completiond.daemon.decoder import Candidate, Query, postprocess
from completiond.evaluation.evaluate import EvalConfig, evaluate, held_out_retriever


def setting(text: str) -> tuple[str, RetrievalConfig]:
    """'name=value name=value' over the defaults (numbers and booleans only)."""
    config = RetrievalConfig()
    types = {f.name: type(getattr(config, f.name)) for f in fields(config)}
    changes: dict[str, object] = {}
    for item in text.split():
        name, _, value = item.partition("=")
        if types.get(name) not in (int, float, bool):
            raise SystemExit(f"--set: {name!r} is not a number or flag of RetrievalConfig")
        changes[name] = value == "true" if types[name] is bool else types[name](value)
    return text or "defaults", replace(config, **changes)


def measure(repo: Path, config: RetrievalConfig, eval_config: EvalConfig) -> list[str]:
    """Markdown cells: exact typed, exact random, keystrokes saved, ms per request."""
    corpus = build_corpus(repo)
    weights = calibrate(read_texts(repo, corpus.train_files), config).weights
    retriever = held_out_retriever(repo, corpus.train_files, replace(config, weights=weights))

    def complete(query: Query) -> list[Candidate]:
        return postprocess([], query, retriever.candidates(query.prefix, query.suffix))

    start = time.perf_counter()
    report = evaluate(complete, repo, corpus.val_files, eval_config, system="retrieval")
    asked = sum(m.count for m in report.modes.values())
    replayed = len(report.keystrokes.latencies_s) if report.keystrokes else 0
    per_request = 1000 * (time.perf_counter() - start) / max(1, asked + replayed)
    saved = report.keystrokes.saved if report.keystrokes else float("nan")
    return [
        f"{100 * report.modes['typed'].exact_match:.1f}%",
        f"{100 * report.modes['random'].exact_match:.1f}%",
        f"{100 * saved:.1f}%",
        f"{per_request:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpora", default="python,c", help="comma-separated: python,c,js,pypi,ts"
    )
    parser.add_argument("--queries", type=int, default=500, help="held-out lines per corpus")
    parser.add_argument("--replay-lines", type=int, default=100, help="lines replayed")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="'NAME=VALUE ...'",
        help="settings to compare with the defaults, each one quoted string",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = corpus_names(parser, args.corpora)
    settings = [setting(""), *(setting(s) for s in args.set)]
    eval_config = EvalConfig(queries=args.queries, replay_lines=args.replay_lines, seed=args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="completiond-rules-"))
    try:
        rows = []
        for name in names:
            repo = CORPORA[name][1](scratch / name)
            for label, config in settings:
                rows.append([label, name, *measure(repo, config, eval_config)])
                print(" | ".join(rows[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\nRetrieval alone (no model), {args.queries} held-out lines per corpus, "
        f"{args.replay_lines} replayed (seed {args.seed}); ms: per request, in process.\n"
    )
    print("| setting | corpus | exact typed | exact random | keystrokes saved | ms |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
