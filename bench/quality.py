"""Completion quality of the product against two baselines, on code this project did not write.

Corpora (each copied into a scratch directory and split by file exactly as `completiond train`
does; the held-out files are what every system is measured on):

- `python`: packages of the Python standard library on this machine (as bench/bpc.py);
- `c`: C headers installed under /usr/include (CPython's, libxml2's, ...: real C on disk);
- `js` (not by default; needs the npm registry): JavaScript sources of a few well-known npm
  packages, fetched with `npm pack` at run time into the scratch directory;
- `pypi` (not by default; needs PyPI): the Python files of a few well-known PyPI projects'
  source distributions, tests included (Python other than the standard library, on which
  DEFAULT_WEIGHTS were fitted);
- `ts` (not by default; needs the npm registry): the TypeScript sources of rxjs (not its
  declaration files).

Systems, each trained under the same wall-clock budget on the training files:

- `product`: the default model (ModelConfig(), TrainConfig()) served as the daemon serves it,
  with retrieval from an index of the training files (the held-out files are not in it);
- `model alone`: the same model without retrieval (`serve --no-retrieval`);
- `lstm-128`: the "classic toy", a 1x128 character LSTM over 60-character windows, greedy;
- `ngram`: a token 4-gram model with interpolated Kneser-Ney smoothing and a cache of the
  current file (bench/baselines.py).

Every system is measured by `completiond.evaluation.evaluate.evaluate` (exact match, edit
similarity, answer rate, keystrokes saved, latency), cursor after the indentation + 10 typed
characters and at a random point of the line. One Markdown table is printed; `--report DIR`
writes the product's full report (Markdown, JSON, plots) per corpus.

    .venv/bin/python bench/quality.py                          # 5 minutes per model (~30 min)
    .venv/bin/python bench/quality.py --minutes 0.3 --queries 60   # a quick look
    .venv/bin/python bench/quality.py --systems product --start-below 0 0.1 0.2   # side by side
    .venv/bin/python bench/quality.py --systems product --typed-through keep cut   # side by side
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from baselines import NgramCompleter, train_toy_lstm  # bench/ is on the path when this runs
from bpc import PACKAGES, stdlib_corpus

from completiond.completion.ranking import START_BELOW
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.bundle import ModelStore
from completiond.core.corpus import Corpus, build_corpus, read_texts
from completiond.daemon.decoder import DecoderConfig
from completiond.daemon.model_slot import ModelSlot, calibrated
from completiond.evaluation.evaluate import EvalConfig, EvalReport, evaluate, held_out_retriever
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig

INCLUDE = Path("/usr/include")
# Tried in order until C_TARGET_BYTES are copied: library headers with real code (inline
# functions, macros, structs), not only prototypes.
C_DIRS = ("python3*", "libxml2", "freetype2", "openssl", "tcl", "X11")
C_TARGET_BYTES = 1_500_000
NPM_PACKAGES = ("lodash@4.17.21", "express@4.21.2", "moment@2.30.1")
TS_PACKAGES = ("rxjs@7.8.1",)
PYPI_PACKAGES = (
    "requests==2.32.3",
    "click==8.1.7",
    "rich==13.9.4",
    "attrs==24.2.0",
    "jinja2==3.1.4",
)


def c_corpus(dest: Path) -> Path:
    """C headers and sources from /usr/include, about C_TARGET_BYTES of them."""
    copied = 0
    for pattern in C_DIRS:
        for source in sorted(INCLUDE.glob(pattern)):
            if copied >= C_TARGET_BYTES or not source.is_dir():
                continue
            for path in sorted(source.rglob("*")):
                if path.suffix in (".h", ".c") and path.is_file() and not path.is_symlink():
                    target = dest / path.relative_to(INCLUDE)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    copied += path.stat().st_size
    if not copied:
        raise SystemExit(f"no C headers found under {INCLUDE} ({', '.join(C_DIRS)})")
    return dest


def _fetch(command: list[str], where: Path) -> None:
    """Run a registry client in `where`; a failure stops the run with the client's own reason."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(command, cwd=where, check=True, capture_output=True, timeout=300, text=True)
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(command)} failed: {exc}: {' / '.join(why)}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"{' '.join(command)} failed: {exc}") from exc


def _extract(archives: list[Path], dest: Path, keep: Callable[[str], bool]) -> Path:
    """The files of each archive whose name `keep` accepts, under dest/<archive stem>."""
    for archive in archives:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and keep(m.name)]
            stem = archive.name.removesuffix(".tgz").removesuffix(".tar.gz")
            tar.extractall(dest / stem, members=members, filter="data")
    return dest


def npm_corpus(dest: Path, packages: tuple[str, ...], keep: Callable[[str], bool]) -> Path:
    """Files of npm packages, fetched with `npm pack` (nothing is committed)."""
    packs = dest.parent / f"{dest.name}-packs"
    _fetch(["npm", "pack", *packages], packs)
    return _extract(sorted(packs.glob("*.tgz")), dest, keep)


def pypi_corpus(dest: Path, packages: tuple[str, ...] = PYPI_PACKAGES) -> Path:
    """The .py files of PyPI source distributions, fetched with `pip download`."""
    packs = dest.parent / f"{dest.name}-packs"
    pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    _fetch([*pip, "--quiet", "--dest", str(packs), *packages], packs)
    return _extract(sorted(packs.glob("*.tar.gz")), dest, lambda name: name.endswith(".py"))


def _javascript(name: str) -> bool:
    return name.endswith(".js") and not name.endswith(".min.js")


def _typescript(name: str) -> bool:
    return name.endswith(".ts") and not name.endswith(".d.ts")


CORPORA: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "python": (f"stdlib {', '.join(PACKAGES)}", lambda d: stdlib_corpus(d, PACKAGES)),
    "c": (f"{INCLUDE} ({', '.join(C_DIRS)}, ~{C_TARGET_BYTES / 1e6:g} MB)", c_corpus),
    "js": (f"npm {', '.join(NPM_PACKAGES)}", lambda d: npm_corpus(d, NPM_PACKAGES, _javascript)),
    "pypi": (f"PyPI {', '.join(PYPI_PACKAGES)}", pypi_corpus),
    "ts": (f"npm {', '.join(TS_PACKAGES)}", lambda d: npm_corpus(d, TS_PACKAGES, _typescript)),
}


def corpus_names(parser: argparse.ArgumentParser, value: str) -> list[str]:
    """The names of a comma-separated --corpora value; a usage error for unknown ones."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in CORPORA]
    if unknown or not names:
        parser.error(
            f"--corpora: unknown {', '.join(unknown) or 'none'} (from {', '.join(CORPORA)})"
        )
    return names


def _pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"


def row(corpus: str, system: str, report: EvalReport) -> list[str]:
    keys = report.keystrokes.saved if report.keystrokes and report.keystrokes.lines else None
    return [
        f"| {corpus} | {mode} | {system} | {_pct(r.exact_match)} | {_pct(r.edit_similarity)} | "
        f"{_pct(r.answer_rate)} | {_pct(keys)} | {r.latency_p50_ms:.1f} |"
        for mode, r in report.modes.items()
    ]


def editor_row(corpus: str, system: str, threshold: float, report: EvalReport) -> list[str]:
    """What an editor showing only suggestions at `threshold` or more gets."""
    keys = report.keystrokes.saved if report.keystrokes and report.keystrokes.lines else None
    out = []
    for mode, r in report.modes.items():
        shown = [q for q in r.results if q.prediction]
        right = sum(q.accepted for q in shown) / len(shown) if shown else None
        out.append(
            f"| {corpus} | {mode} | {system} | {threshold:g} | {_pct(r.answer_rate)} | "
            f"{_pct(right)} | {_pct(r.exact_match)} | {_pct(keys)} |"
        )
    return out


SYSTEMS = ("product", "model alone", "lstm-128", "ngram")


def run_corpus(
    name: str, repo: Path, scratch: Path, args: argparse.Namespace
) -> tuple[list[str], list[str], list[str]]:
    """(table rows, notes, editor-threshold rows) for one corpus."""
    corpus: Corpus = build_corpus(repo)
    where = CORPORA[name][0]
    if name == "c":  # the directories actually copied
        where = f"{INCLUDE}: {', '.join(sorted(p.name for p in repo.iterdir()))}"
    notes = [
        f"{name}: {where}: {len(corpus.train_files)} training files "
        f"({len(corpus.train_text):,} chars), {len(corpus.val_files)} held-out files "
        f"({len(corpus.val_text):,} chars)"
    ]
    print(notes[0], file=sys.stderr, flush=True)
    config = EvalConfig(
        queries=args.queries,
        replay_lines=args.replay_lines,
        seed=args.seed,
        accept_rate=args.accept_rate,
    )
    systems: list[tuple[str, Callable, str]] = []

    start = time.monotonic()
    store = ModelStore(scratch / f"{name}-product")
    if {"product", "model alone"} & args.systems:
        # With a step count, one validation at the end: the same weights whatever the timing.
        steps = {"max_steps": args.max_steps, "eval_interval_s": 1e9} if args.max_steps else {}
        budget = TrainConfig(minutes=args.minutes, threads=args.threads, **steps)
        bundle = train_repository(repo, store, ModelConfig(), budget).bundle
    if "product" in args.systems:
        # The index without the held-out files; the confidence weights the training run fitted
        # on training files only.
        fitted = calibrated(store, RetrievalConfig())
        index = held_out_retriever(repo, corpus.train_files, fitted).index
        variants = [(b, t) for b in args.start_below for t in args.typed_through]
        for below, typed_through in variants:
            kept = typed_through == "keep"  # serve --keep-typed-through
            typed = {"declined_below": 0.0} if kept else {}
            product = ModelSlot(store, decoder_config=DecoderConfig(start_below=below, **typed))
            product.load_current().decoder.retriever = Retriever(index, fitted)
            label = "product"
            if len(args.start_below) > 1:
                label += f", start<{below:g}"
            if len(args.typed_through) > 1:
                label += f", typed through: {typed_through}"
            systems.append(
                (
                    label,
                    product.get().decoder.complete,
                    f"{label} 1x{bundle.meta['model']['hidden_size']}: retrieval (index of the "
                    "training files + the file), the model (beam 4) when nothing is found, its "
                    f"confident start when nothing found is {below:g} sure; a suggestion typed "
                    f"through: {typed_through}; "
                    f"{bundle.meta['val_bpc']:.3f} bits/char, {time.monotonic() - start:.0f} s",
                )
            )
    if "model alone" in args.systems:
        alone = ModelSlot(store, retrieval_config=RetrievalConfig(enabled=False)).load_current()
        notes_alone = "model alone: the product's model, no retrieval"
        systems.append(("model alone", alone.decoder.complete, notes_alone))

    start = time.monotonic()
    if "lstm-128" in args.systems:
        toy = train_toy_lstm(repo, scratch / f"{name}-toy", args.minutes)
        systems.append(
            (
                "lstm-128",
                toy.decoder.complete,
                f"lstm-128 (1x128, 60-char windows, greedy): {toy.bundle.meta['val_bpc']:.3f} "
                f"bits/char, {time.monotonic() - start:.0f} s",
            )
        )

    start = time.monotonic()
    if "ngram" in args.systems:
        ngram = NgramCompleter.fit(read_texts(repo, corpus.train_files).values())
        systems.append(
            (
                "ngram",
                ngram.complete,
                f"ngram (token {ngram.config.order}-gram, Kneser-Ney + file cache "
                f"{ngram.config.cache_weight:g}, beam {ngram.config.beam_width}): "
                f"{len(ngram.vocab):,} token types, fitted in {time.monotonic() - start:.1f} s",
            )
        )

    rows: list[str] = []
    editor_rows: list[str] = []
    for system, complete, note in systems:
        start = time.monotonic()
        report = evaluate(complete, repo, corpus.val_files, config, system=f"{system} on {name}")
        notes.append(f"  {note}; evaluated in {time.monotonic() - start:.0f} s")
        print(notes[-1], file=sys.stderr, flush=True)
        rows += row(name, system, report)
        if system.startswith("product") and args.report:
            path = report.write(args.report / name / system.replace(" ", "").replace(",", "-"))
            notes.append(f"  product report: {path}")
        if system.startswith("product"):
            for threshold in args.editor_threshold:
                shown = replace(config, min_confidence=threshold)
                report = evaluate(complete, repo, corpus.val_files, shown, system=system)
                editor_rows += editor_row(name, system, threshold, report)
    return rows, notes, editor_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop the product's training after this many steps (0: the time budget alone); with "
        "--threads, the same model on every run: to compare two versions of the code",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: all cores but one)"
    )
    parser.add_argument("--queries", type=int, default=500, help="held-out lines per corpus")
    parser.add_argument("--replay-lines", type=int, default=60, help="lines replayed per system")
    parser.add_argument(
        "--corpora", default="python,c", help="comma-separated: python,c,js,pypi,ts"
    )
    parser.add_argument("--report", type=Path, help="write the product's report here per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--accept-rate",
        type=float,
        default=1.0,
        help="replay: chance that a right suggestion is accepted at a keystroke (else typed along)",
    )
    parser.add_argument(
        "--start-below",
        type=float,
        nargs="+",
        default=[START_BELOW],
        metavar="CONFIDENCE",
        help="the product once per value of DecoderConfig.start_below, same model, side by side",
    )
    parser.add_argument(
        "--typed-through",
        nargs="+",
        choices=("cut", "keep"),
        default=["cut"],
        help="the product once per way of treating a suggestion typed through (cut: its first "
        "word when less confident than DecoderConfig.declined_below, the default; keep: whole "
        "again), same model, side by side",
    )
    parser.add_argument(
        "--editor-threshold",
        type=float,
        nargs="*",
        default=[0.6],
        metavar="CONFIDENCE",
        help="also evaluate the product asking for suggestions this confident or more, as an "
        "editor does (default: 0.6, the LSP bridge's; none: skip)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)}"
    )
    args = parser.parse_args()
    names = corpus_names(parser, args.corpora)
    args.systems = set(args.systems.split(","))
    if args.systems - set(SYSTEMS):
        parser.error(f"--systems: unknown {', '.join(sorted(args.systems - set(SYSTEMS)))}")

    scratch = Path(tempfile.mkdtemp(prefix="completiond-quality-"))
    rows: list[str] = []
    notes: list[str] = []
    editor_rows: list[str] = []
    try:
        # Fetched first: a registry that cannot be reached stops the run before any training.
        repos = {name: CORPORA[name][1](scratch / name) for name in names}
        for name, repo in repos.items():
            r, n, e = run_corpus(name, repo, scratch, args)
            rows += r
            notes += n
            editor_rows += e
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"Completion quality on held-out files: {args.minutes:g} min of training per model, "
        f"{args.queries} lines per corpus (seed {args.seed}); cursor `typed` = indentation + 10 "
        "characters, `random` = uniform in the line; best candidate only. Keystrokes saved: "
        f"{args.replay_lines} lines replayed from their indentation (one number per system, the "
        "same in both rows). p50: one request reading the prefix cold, in-process.\n"
    )
    print("\n".join(notes) + "\n")
    print(
        "| corpus | mode | system | exact match | edit similarity | answer rate | "
        "keystrokes saved | p50 ms |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if editor_rows:
        print(
            "\nThe product as an editor shows it: only suggestions at the threshold or more (the "
            "request's min_confidence; the LSP bridge's default is 0.6). Shown: share of lines "
            "with a suggestion; right: share of those that are a prefix of the truth.\n"
        )
        print(
            "| corpus | mode | system | threshold | shown | right | exact match | "
            "keystrokes saved |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(editor_rows))


if __name__ == "__main__":
    main()
