"""Completion quality of the product, its parts and reference peers, on code this project did not
write.

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

Systems, each trained under the same wall-clock budget on the training files (by default the
first five):

- `product`: the default model (ModelConfig(), TrainConfig(); `--hidden-size` another size)
  served as the daemon serves it, with retrieval from an index of the training files (the
  held-out files are not in it);
- `retrieval alone`: the same product, same index and fitted confidences, with
  DecoderConfig(run_model=False): the model never runs, only retrieval answers;
- `model alone`: the same model without retrieval (`serve --no-retrieval`);
- `ref-ngram`, `ref-lstm`: the reference peers (`--peers DIR`, default ../shared/reference-peers
  from the repository root: a token 5-gram with a file cache, and the Keras example's character
  LSTM), run through their README's protocol as subprocesses (bench/peers.py);
- `ngram` (not by default): a token 4-gram model with interpolated Kneser-Ney smoothing and a
  cache of the current file (bench/baselines.py);
- `lstm-128` (not by default): the "classic toy", a 1x128 character LSTM over 60-character
  windows, greedy, trained through the product's pipeline;
- `product+base`, `model alone+base` (with `--base-cache DIR`, a cache laid out as
  DIR/completiond/bases/<language>/, what bench/base_curve.py keeps): a second product model
  trained the same way but starting from the corpus language's base. Every training and
  held-out file is hashed as the base's manifest hashes them; the notes give the manifest's
  sha256 and how many are in it, and these rows are left out when a held-out file is.

The product's models (and lstm-128) train with XDG_CACHE_HOME set to an empty scratch directory,
so a base in the user's own ~/.cache never silently takes part; the +base model with it set to a
scratch copy of --base-cache.

Every system is measured by `completiond.evaluation.evaluate.evaluate` (exact match, edit
similarity, answer rate, keystrokes saved, latency), cursor after the indentation + 10 typed
characters and at a random point of the line. One Markdown table is printed; `--report DIR`
writes the product's full report (Markdown, JSON, plots) per corpus.

    .venv/bin/python bench/quality.py                          # 5 minutes per model (~30 min)
    .venv/bin/python bench/quality.py --minutes 0.3 --queries 60   # a quick look
    .venv/bin/python bench/quality.py --systems product --start-below 0 0.1 0.2   # side by side
    .venv/bin/python bench/quality.py --systems product --typed-through keep cut   # side by side
    .venv/bin/python bench/quality.py --base-cache bench/out/bases/python/60min --corpora python
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from baselines import NgramCompleter, train_toy_lstm  # bench/ is on the path when this runs
from bpc import PACKAGES, stdlib_corpus
from peers import PEERS, Peer, default_peers_dir, evaluate_peer, missing_peers

from completiond.completion.file_cache import FileCacheConfig
from completiond.completion.ranking import MODEL_BELOW, START_BELOW
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.bundle import ModelStore
from completiond.core.corpus import Corpus, build_corpus, read_texts
from completiond.core.discovery import BASE_MANIFEST, language_of, read_base_meta, text_hash
from completiond.daemon.decoder import DecoderConfig
from completiond.daemon.model_slot import ModelSlot, calibrated
from completiond.evaluation.evaluate import (
    CompleteFn,
    EvalConfig,
    EvalReport,
    evaluate,
    held_out_retriever,
)
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


@dataclass
class System:
    """One row's system: `measure` evaluates it under an EvalConfig."""

    name: str
    measure: Callable[[EvalConfig], EvalReport]
    note: str


DEFAULT_SYSTEMS = ("product", "retrieval alone", "model alone", "ref-ngram", "ref-lstm")
BASE_SYSTEMS = ("product+base", "model alone+base")  # with --base-cache
SYSTEMS = (*DEFAULT_SYSTEMS, "ngram", "lstm-128", *BASE_SYSTEMS)


@contextmanager
def cache_home(path: Path) -> Iterator[None]:
    """XDG_CACHE_HOME is `path` meanwhile, restored after: training reads it (bases_dir()) at
    each run, so the base a run starts from, if any, is the one under `path`."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = before


def in_process(complete: CompleteFn, repo: Path, files: list[str], label: str) -> Callable:
    return lambda config: evaluate(complete, repo, files, config, system=label)


def served_systems(
    suffix: str, store: ModelStore, repo: Path, corpus: Corpus, args: argparse.Namespace, how: str
) -> list[System]:
    """The product (once per --start-below x --typed-through), retrieval alone and the model
    alone, as asked in --systems, served from `store`; `suffix` ends their names ("+base")."""
    systems: list[System] = []
    meta = store.current().meta
    files = corpus.val_files
    # The index without the held-out files; the confidence weights the training run fitted
    # on training files only.
    fitted = calibrated(store, RetrievalConfig())
    index = held_out_retriever(repo, corpus.train_files, fitted).index
    model = f"1x{meta['model']['hidden_size']}, {meta['val_bpc']:.3f} bits/char, {how}"
    if "file_cache" in meta:  # what the training run chose, and why
        fit = meta["file_cache"]
        model += f", file cache chosen: {fit['kappa']:g} (greedy exact {fit['exact']})"
    if f"product{suffix}" in args.systems:
        settings = itertools.product(
            args.start_below, args.typed_through, args.model_below, args.file_cache_kappa
        )
        for below, typed_through, model_below, kappa in settings:
            kept = typed_through == "keep"  # serve --keep-typed-through
            typed = {"declined_below": 0.0} if kept else {}
            decoding = DecoderConfig(
                start_below=below, model_below=model_below, file_cache=file_cache(kappa), **typed
            )
            product = ModelSlot(store, decoder_config=decoding)
            product.load_current().decoder.retriever = Retriever(index, fitted)
            label = f"product{suffix}"
            if len(args.start_below) > 1:
                label += f", start<{below:g}"
            if len(args.typed_through) > 1:
                label += f", typed through: {typed_through}"
            if len(args.model_below) > 1:
                label += f", model<{model_below:g}"
            if len(args.file_cache_kappa) > 1:
                label += f", cache {kappa}"
            when = "nothing is found" if model_below == 0 else f"copies are < {model_below:g} sure"
            note = (
                f"{label} ({model}): retrieval (index of the training files + the file), the "
                f"model (beam 4) when {when}, its confident start when nothing found is "
                f"{below:g} sure; a suggestion typed through: {typed_through}"
            )
            complete = product.get().decoder.complete
            systems.append(System(label, in_process(complete, repo, files, label), note))
    if f"retrieval alone{suffix}" in args.systems:
        alone = ModelSlot(store, decoder_config=DecoderConfig(run_model=False)).load_current()
        alone.decoder.retriever = Retriever(index, fitted)
        label = f"retrieval alone{suffix}"
        note = (
            f"{label}: the product as served (same index, same fitted confidences) with "
            "DecoderConfig(run_model=False): the model never runs"
        )
        systems.append(System(label, in_process(alone.decoder.complete, repo, files, label), note))
    for kappa in args.file_cache_kappa if f"model alone{suffix}" in args.systems else ():
        alone = ModelSlot(
            store,
            retrieval_config=RetrievalConfig(enabled=False),
            decoder_config=DecoderConfig(file_cache=file_cache(kappa)),
        ).load_current()
        label = f"model alone{suffix}"
        if len(args.file_cache_kappa) > 1:
            label += f", cache {kappa}"
        note = f"{label}: the product's model ({model}), file cache kappa {kappa}, no retrieval"
        systems.append(System(label, in_process(alone.decoder.complete, repo, files, label), note))
    return systems


def file_cache(kappa: str) -> FileCacheConfig:
    """The decoder's file cache: the weight chosen for the model (`model`), or this one (0:
    off)."""
    if kappa == "model":
        return FileCacheConfig()
    return FileCacheConfig(kappa=float(kappa), from_model=False)


def _kappa(value: str) -> str:
    """A --file-cache-kappa value: `model` or a number at least 0."""
    try:
        if value == "model" or float(value) >= 0:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a weight (a number >= 0, or model): {value}")


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The product's model: the default, or --hidden-size (a base must have that size too)."""
    return ModelConfig(hidden_size=args.hidden_size)


def train_budget(args: argparse.Namespace) -> TrainConfig:
    # With a step count, one validation at the end: the same weights whatever the timing.
    steps = {"max_steps": args.max_steps, "eval_interval_s": 1e9} if args.max_steps else {}
    return TrainConfig(minutes=args.minutes, threads=args.threads, **steps)


def base_leaks(repo: Path, corpus: Corpus, manifest: set[str]) -> tuple[int, int]:
    """(training files, held-out files) whose content is in a base's manifest, hashed as the
    manifest hashes (the text as the corpus reads it)."""

    def count(files: list[str]) -> int:
        return sum(text_hash(text) in manifest for text in read_texts(repo, files).values())

    return count(corpus.train_files), count(corpus.val_files)


def base_systems(
    name: str, repo: Path, corpus: Corpus, scratch: Path, args: argparse.Namespace
) -> tuple[list[System], list[str]]:
    """The product and its model alone trained from the base in the scratch copy of
    --base-cache (same budget), after the leak check; the notes say what was checked."""
    cache = scratch / "base-cache"
    language = language_of([*corpus.train_files, *corpus.val_files]) or "?"
    directory = cache / "completiond" / "bases" / language
    meta = read_base_meta(directory)
    if meta is None:
        return [], [f"  +base: no complete {language} base in {args.base_cache}: no +base rows"]
    manifest = set(json.loads((directory / BASE_MANIFEST).read_text())["files"].values())
    in_train, in_held_out = base_leaks(repo, corpus, manifest)
    notes = [
        f"  +base: the {language} base of {args.base_cache} ({len(manifest):,} files, held-out "
        f"{meta['val_bpc']:.3f} bits/char), manifest sha256 {meta['manifest_sha256']}; files "
        f"whose content is in it: training {in_train}/{len(corpus.train_files)}, held-out "
        f"{in_held_out}/{len(corpus.val_files)}"
    ]
    if in_held_out:
        return [], [*notes, "  +base rows left out: held-out files are in the base"]
    start = time.monotonic()
    store = ModelStore(scratch / f"{name}-product-base")
    with cache_home(cache):
        bundle = train_repository(repo, store, model_config(args), train_budget(args)).bundle
    if bundle.meta.get("base") is None:
        return [], [*notes, "  +base rows left out: the base did not apply (another model shape)"]
    how = f"from the base, {time.monotonic() - start:.0f} s"
    return served_systems("+base", store, repo, corpus, args, how), notes


def peer_systems(
    name: str, repo: Path, corpus: Corpus, scratch: Path, args: argparse.Namespace
) -> list[System]:
    """The reference peers asked for, each trained through its protocol for --minutes."""
    threads = args.threads or max(1, (os.cpu_count() or 2) - 1)  # as the product trains
    systems = []
    for label, script in PEERS.items():
        if label not in args.systems:
            continue
        peer = Peer(label, args.peers / script, scratch / f"{name}-{label}", threads)
        start = time.monotonic()
        logged = peer.train(repo, corpus.train_files, args.minutes)
        note = (
            f"{label} ({args.peers / script}, BENCH_THREADS={threads}): trained in "
            f"{time.monotonic() - start:.0f} s; it said: {logged}"
        )

        def measure(config: EvalConfig, peer: Peer = peer, label: str = label) -> EvalReport:
            return evaluate_peer(peer, repo, corpus.val_files, config, label)

        systems.append(System(label, measure, note))
    return systems


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
    systems: list[System] = []
    files = corpus.val_files
    # An empty cache: a base in the user's own ~/.cache never silently takes part.
    empty = scratch / "cache-empty"
    empty.mkdir(exist_ok=True)

    if {"product", "retrieval alone", "model alone"} & args.systems:
        start = time.monotonic()
        store = ModelStore(scratch / f"{name}-product")
        with cache_home(empty):
            train_repository(repo, store, model_config(args), train_budget(args))
        how = f"from scratch, {time.monotonic() - start:.0f} s"
        systems += served_systems("", store, repo, corpus, args, how)
    if set(BASE_SYSTEMS) & args.systems:
        found, base_notes = base_systems(name, repo, corpus, scratch, args)
        systems += found
        notes += base_notes

    systems += peer_systems(name, repo, corpus, scratch, args)

    if "lstm-128" in args.systems:
        start = time.monotonic()
        with cache_home(empty):
            toy = train_toy_lstm(repo, scratch / f"{name}-toy", args.minutes)
        note = (
            f"lstm-128 (1x128, 60-char windows, greedy): {toy.bundle.meta['val_bpc']:.3f} "
            f"bits/char, {time.monotonic() - start:.0f} s"
        )
        systems.append(
            System("lstm-128", in_process(toy.decoder.complete, repo, files, "lstm-128"), note)
        )

    if "ngram" in args.systems:
        start = time.monotonic()
        ngram = NgramCompleter.fit(read_texts(repo, corpus.train_files).values())
        note = (
            f"ngram (token {ngram.config.order}-gram, Kneser-Ney + file cache "
            f"{ngram.config.cache_weight:g}, beam {ngram.config.beam_width}): "
            f"{len(ngram.vocab):,} token types, fitted in {time.monotonic() - start:.1f} s"
        )
        systems.append(System("ngram", in_process(ngram.complete, repo, files, "ngram"), note))

    rows: list[str] = []
    editor_rows: list[str] = []
    for system in systems:
        start = time.monotonic()
        report = system.measure(config)
        notes.append(f"  {system.note}; evaluated in {time.monotonic() - start:.0f} s")
        notes += [f"    {n}" for n in report.notes]
        print("\n".join(notes[-1 - len(report.notes) :]), file=sys.stderr, flush=True)
        rows += row(name, system.name, report)
        if system.name.startswith("product") and args.report:
            directory = system.name.replace(" ", "").replace(",", "-")
            notes.append(f"  product report: {report.write(args.report / name / directory)}")
        if system.name.startswith("product"):
            for threshold in args.editor_threshold:
                shown = system.measure(replace(config, min_confidence=threshold))
                editor_rows += editor_row(name, system.name, threshold, shown)
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
        "--hidden-size",
        type=int,
        default=ModelConfig.hidden_size,
        help="LSTM units of the product's models (with --base-cache, a base of that size)",
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
        "--model-below",
        type=float,
        nargs="+",
        default=[MODEL_BELOW],
        metavar="CONFIDENCE",
        help="the product once per value of DecoderConfig.model_below (the model's beams also "
        "run when the best copied line is less sure; 0: only when nothing is found), same model, "
        "side by side",
    )
    parser.add_argument(
        "--file-cache-kappa",
        type=_kappa,
        nargs="+",
        default=["model"],
        metavar="KAPPA",
        help="the product and the model alone once per value of FileCacheConfig.kappa (the "
        "current file mixed into the model's next characters; 0: off; model: the weight the "
        "training run chose, the default), same model, side by side",
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
        "--systems",
        help=f"comma-separated, from {','.join(SYSTEMS)} (default: {','.join(DEFAULT_SYSTEMS)}, "
        f"and {','.join(BASE_SYSTEMS)} with --base-cache)",
    )
    parser.add_argument(
        "--peers",
        type=Path,
        default=default_peers_dir(),
        help="the reference peers' directory (its README.md gives their protocol; default: "
        "../shared/reference-peers from the repository root)",
    )
    parser.add_argument(
        "--base-cache",
        type=Path,
        metavar="DIR",
        help="a cache holding bases (DIR/completiond/bases/<language>/, as bench/base_curve.py "
        "keeps them): the product and its model alone again, trained from the corpus "
        "language's base (rows `product+base`, `model alone+base`)",
    )
    args = parser.parse_args()
    names = corpus_names(parser, args.corpora)
    args.systems = set(
        args.systems.split(",")
        if args.systems
        else [*DEFAULT_SYSTEMS, *(BASE_SYSTEMS if args.base_cache else ())]
    )
    if args.systems - set(SYSTEMS):
        parser.error(f"--systems: unknown {', '.join(sorted(args.systems - set(SYSTEMS)))}")
    if set(BASE_SYSTEMS) & args.systems and not args.base_cache:
        parser.error(f"--systems: {', '.join(BASE_SYSTEMS)} need --base-cache")
    if args.base_cache and not (args.base_cache / "completiond" / "bases").is_dir():
        parser.error(f"--base-cache: no {args.base_cache / 'completiond' / 'bases'} directory")
    missing = missing_peers(args.peers, args.systems)
    if missing:
        parser.error(
            f"--peers: {args.peers} lacks {', '.join(missing)} (the reference peers, needed by "
            f"{', '.join(sorted(set(PEERS) & args.systems))}; leave them out with --systems)"
        )

    scratch = Path(tempfile.mkdtemp(prefix="completiond-quality-"))
    rows: list[str] = []
    notes: list[str] = []
    editor_rows: list[str] = []
    try:
        # Fetched first: a registry that cannot be reached stops the run before any training.
        repos = {name: CORPORA[name][1](scratch / name) for name in names}
        if args.base_cache and set(BASE_SYSTEMS) & args.systems:
            shutil.copytree(args.base_cache, scratch / "base-cache")  # training never writes DIR
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
        "same in both rows). p50: one request reading the prefix cold, in-process; for the "
        "ref-* peers, the peer's own time per query (its P.jsonl `ms`, model loading "
        "excluded). The product and its model alone train with an empty XDG_CACHE_HOME (no "
        "base), the +base rows with a copy of --base-cache; the peers get the same minutes.\n"
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
