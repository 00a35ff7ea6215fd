"""How a base model improves with pretraining time: held-out bits/char after each mark.

One `pretrain` run (as `completiond pretrain --from`) is continued to each mark in turn (a larger
budget continues a finished base); after each, the base is copied to `--keep DIR/<mark>min`, laid
out as a cache (`XDG_CACHE_HOME=DIR/<mark>min` makes a repository model start from it), so
bench/quality.py can fine-tune from the base of each mark. The sources are code this project
did not write and that no corpus of bench/quality.py holds:

- `python`: this interpreter's installed packages (site-packages), without the PyPI projects of
  quality.py's `pypi` corpus and without the standard library (quality.py's `python` corpus);
- `c`: /usr/include without the directories of quality.py's `c` corpus.

    .venv/bin/python bench/base_curve.py --language python --marks 10 30 60 --keep bench/out/bases
    .venv/bin/python bench/base_curve.py --language c --marks 0.2 --keep /tmp/b   # a quick look
    .venv/bin/python bench/base_curve.py --hidden-size 512 --marks 30 --keep bench/out/bases512
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from quality import C_DIRS, INCLUDE, PYPI_PACKAGES  # bench/ is on the path when this runs

from completiond.training.model import ModelConfig
from completiond.training.pretrain import pretrain
from completiond.training.train import TrainConfig


def _corpus_packages() -> set[str]:
    """The import names the PyPI corpus's projects install here, not only their project names
    (attrs installs `attr` too): any of them left in a base would be evaluated on itself."""
    projects = {requirement.split("==")[0].lower() for requirement in PYPI_PACKAGES}
    installed = importlib.metadata.packages_distributions()
    return projects | {
        name.lower()
        for name, distributions in installed.items()
        if any(d.lower() in projects for d in distributions)
    }


def python_sources() -> list[Path]:
    """Top-level entries of site-packages, without the PyPI corpus's projects."""
    site = Path(sysconfig.get_paths()["purelib"])
    left_out = _corpus_packages()
    return sorted(
        p
        for p in site.iterdir()
        if p.is_dir() and p.name.lower() not in left_out and not p.name.endswith("-info")
    )


def c_sources() -> list[Path]:
    """Directories and headers of /usr/include, without those of the C corpus."""
    left_out = {p for pattern in C_DIRS for p in INCLUDE.glob(pattern)}
    return sorted(p for p in INCLUDE.iterdir() if p.is_dir() and p not in left_out)


SOURCES = {"python": python_sources, "c": c_sources}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--language", choices=sorted(SOURCES), default="python")
    parser.add_argument("--marks", type=float, nargs="+", default=[10, 30, 60], help="minutes")
    parser.add_argument("--keep", type=Path, required=True, help="where each mark's base goes")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=ModelConfig.hidden_size)
    args = parser.parse_args()
    roots = SOURCES[args.language]()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "base"
        for mark in sorted(args.marks):
            start = time.monotonic()
            result = pretrain(
                args.language,
                roots,
                directory,
                None,
                ModelConfig(hidden_size=args.hidden_size),
                TrainConfig(minutes=mark, seed=args.seed, threads=args.threads),
                checkpoint_s=args.checkpoint_minutes * 60,
            )
            kept = args.keep / f"{mark:g}min" / "completiond" / "bases" / args.language
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(directory, kept)
            m = result.meta
            rows.append((mark, m["segments"], m["steps"], m["val_bpc"], time.monotonic() - start))
            print(
                f"{mark:g} min: {m['steps']} steps, held-out {m['val_bpc']:.3f} bits/char "
                f"(-> {kept})",
                flush=True,
            )
    print(
        f"\n{args.language} base: {m['train_files']} training and {m['val_files']} held-out "
        f"files ({m['chars']:,} chars) from {len(roots)} directories; manifest "
        f"{m['manifest_sha256'][:12]}; skipped {json.dumps(m['skipped'])}\n"
    )
    print("| minutes | segments | steps | held-out bits/char |\n|---:|---:|---:|---:|")
    for mark, segments, steps, bpc, _ in rows:
        print(f"| {mark:g} | {segments} | {steps} | {bpc:.3f} |")


if __name__ == "__main__":
    main()
