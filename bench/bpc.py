"""Validation bits per character after 1, 2 and 5 minutes of training, and real completions.

Corpus: packages of the Python standard library on this machine (code this project did not
write), copied into a scratch directory and split by file exactly as `completiond train` does.
For the longest budget it also completes held-out lines through the daemon's decoder (cursor
after the indentation plus 10 characters) and prints exact match and a dozen examples.

    .venv/bin/python bench/bpc.py                   # 1, 2 and 5 minutes (about 10 minutes)
    .venv/bin/python bench/bpc.py --minutes 0.2     # a quick look
"""

from __future__ import annotations

import argparse
import random
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus
from completiond.daemon.decoder import Query
from completiond.daemon.model_slot import ModelSlot
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig

PACKAGES = ("asyncio", "email", "json", "http", "logging", "urllib", "collections", "concurrent")
TYPED = 10  # characters typed after the indentation


def stdlib_corpus(dest: Path, packages: tuple[str, ...]) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in packages:
        shutil.copytree(
            stdlib / name, dest / name, ignore=shutil.ignore_patterns("test*", "__pycache__")
        )
    return dest


def held_out_queries(repo: Path, files: list[str], count: int, seed: int = 0) -> list[tuple]:
    """(file, prefix, truth) for random held-out lines with more than TYPED characters left."""
    rng = random.Random(seed)
    queries = []
    for rel in files:
        text = (repo / rel).read_text()
        offset = 0
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\n")
            indent = len(body) - len(body.lstrip())
            if len(body.strip()) > TYPED + 2 and not body.lstrip().startswith("#"):
                cut = offset + indent + TYPED
                queries.append((rel, text[:cut], body[indent + TYPED :]))
            offset += len(line)
    rng.shuffle(queries)
    return queries[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="completiond-bench-"))
    repo = stdlib_corpus(scratch / "corpus", tuple(args.packages))
    corpus = build_corpus(repo)
    print(
        f"corpus: stdlib {', '.join(args.packages)}: {len(corpus.train_files)} training files "
        f"({len(corpus.train_text):,} chars), {len(corpus.val_files)} held-out files "
        f"({len(corpus.val_text):,} chars)\n"
    )
    print(f"model: 1x{args.hidden_size} character LSTM\n")
    print("| budget (min) | val bits/char | steps | train chars/s | wall s |")
    print("|---:|---:|---:|---:|---:|")
    bundle = None
    for minutes in args.minutes:
        store = ModelStore(scratch / f"store-{minutes:g}")
        start = time.time()
        bundle = train_repository(
            repo, store, ModelConfig(hidden_size=args.hidden_size), TrainConfig(minutes=minutes)
        ).bundle
        meta = bundle.meta
        print(
            f"| {minutes:g} | {meta['val_bpc']:.3f} | {meta['steps']} | "
            f"{meta['chars_per_second']:,.0f} | {time.time() - start:.0f} |",
            flush=True,
        )
    assert bundle is not None
    slot = ModelSlot(ModelStore(bundle.directory.parent.parent))
    decoder = slot.load_current().decoder
    queries = held_out_queries(repo, corpus.val_files, args.queries)
    hits, times, shown = 0, [], []
    for rel, prefix, truth in queries:
        t0 = time.perf_counter()
        candidates = decoder.complete(Query(prefix=prefix))
        times.append(time.perf_counter() - t0)
        guess = candidates[0].text if candidates else ""
        hits += guess.split() == truth.split()
        if len(shown) < args.examples:
            shown.append((rel, prefix.rsplit("\n", 1)[-1], guess, truth))
    times.sort()
    print(
        f"\nheld-out lines, cursor after indentation + {TYPED} chars, beam 4, model of "
        f"{args.minutes[-1]:g} min: exact match {hits}/{len(queries)} = "
        f"{100 * hits / max(1, len(queries)):.1f}%; latency p50 "
        f"{1000 * times[len(times) // 2]:.1f} ms (cold: the last 512 chars are read; in-process)\n"
    )
    print("| file | typed | completion | truth |")
    print("|---|---|---|---|")
    for rel, typed, guess, truth in shown:
        print(f"| {rel} | `{typed.strip()}` | `{guess}` | `{truth}` |")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
