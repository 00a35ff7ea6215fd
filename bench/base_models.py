"""Held-out bits per character of a repository model fine-tuned with and without a base.

The base is built (`training/pretrain.py`, as `completiond pretrain --from`) from some packages
of the Python standard library, or taken from `--base-cache` (a cache bench/base_curve.py kept);
the repository is a copy of another package (default: email), and the script counts the
repository's files whose content is in the base's manifest (it must be none). Then the
repository trains for each budget twice, in two caches: one holding the base, one empty; the
base alone (no fine-tuning, the repository's characters added to its alphabet) is scored too.

    .venv/bin/python bench/base_models.py                        # 5-minute base, 1-minute runs
    .venv/bin/python bench/base_models.py --base-cache bench/out/bases/python/60min --minutes 1 2 5
    .venv/bin/python bench/base_models.py --base-minutes 0.5 --minutes 0.2   # a quick look
    .venv/bin/python bench/base_models.py --base-cache bench/out/bases512/30min --hidden-size 512 \
        --minutes 5   # a larger model, from a base of its own size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from completiond.core.bundle import ModelStore
from completiond.core.corpus import read_files
from completiond.core.discovery import BASE_MANIFEST, bases_dir, read_base_meta, text_hash
from completiond.training.model import ModelConfig
from completiond.training.pretrain import pretrain
from completiond.training.run import prepare, train_repository
from completiond.training.train import TrainConfig, evaluate_bpc

BASE_PACKAGES = (
    "asyncio", "logging", "unittest", "xml", "importlib", "concurrent", "multiprocessing",
    "urllib", "http", "json", "collections", "ctypes", "idlelib", "lib2to3", "distutils",
)  # fmt: skip


def held_out_repo(dest: Path, package: str) -> Path:
    """A git repository holding a copy of one standard-library package."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "held out"]):
        subprocess.run(
            ["git", "-C", str(dest), "-c", "user.name=b", "-c", "user.email=b@b", *args],
            check=True,
        )
    return dest


def train_in_cache(repo: Path, cache: Path, model: ModelConfig, minutes: float, seed: int) -> dict:
    """One repository training run with `cache` as XDG_CACHE_HOME (bases and store)."""
    os.environ["XDG_CACHE_HOME"] = str(cache)
    store = ModelStore(cache / "store")
    result = train_repository(repo, store, model, TrainConfig(minutes=minutes, seed=seed))
    return result.bundle.meta


def base_alone(repo: Path, cache: Path, model: ModelConfig) -> float:
    """Held-out bits/char of the base itself on the repository, as a run would start it."""
    os.environ["XDG_CACHE_HOME"] = str(cache)
    store = ModelStore(cache / "unused")
    prepared = prepare(repo, store, model, TrainConfig(), None, lambda _: None)
    assert prepared.base is not None, "the base did not apply"
    return evaluate_bpc(prepared.model(), prepared.val_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-minutes", type=float, default=5.0)
    parser.add_argument("--base-cache", type=Path, help="use the base kept in this cache")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0], help="repository runs")
    parser.add_argument("--held-out", default="email", help="the repository's package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hidden-size", type=int, default=ModelConfig.hidden_size, help="the base's and the runs'"
    )
    args = parser.parse_args()
    model = ModelConfig(hidden_size=args.hidden_size)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots = [stdlib / p for p in BASE_PACKAGES if p != args.held_out and (stdlib / p).is_dir()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = held_out_repo(work / "repo", args.held_out)
        with_cache = work / "with"
        if args.base_cache:
            shutil.copytree(args.base_cache, with_cache)
            os.environ["XDG_CACHE_HOME"] = str(with_cache)
            meta = read_base_meta(bases_dir() / "python")
            assert meta is not None, f"no python base in {args.base_cache}"
        else:
            os.environ["XDG_CACHE_HOME"] = str(with_cache)
            meta = pretrain(
                "python",
                roots,
                bases_dir() / "python",
                repo,
                model,
                TrainConfig(minutes=args.base_minutes, seed=args.seed),
                checkpoint_s=args.base_minutes * 60,
            ).meta
        manifest = json.loads((bases_dir() / "python" / BASE_MANIFEST).read_text())["files"]
        repo_hashes = {text_hash(t) for t in read_files(repo)[0].values()}
        shared = len(repo_hashes & set(manifest.values()))
        zero = base_alone(repo, with_cache, model)
        runs = []
        for minutes in args.minutes:
            for name, cache in (("from scratch", "without"), ("from the base", "with")):
                shutil.rmtree(work / cache / "store", ignore_errors=True)
                run = train_in_cache(repo, work / cache, model, minutes, args.seed)
                runs.append((name, minutes, run))
    print(
        f"base: {meta['train_files']} files ({meta['chars']:,} chars), "
        f"{meta['seconds'] / 60:.1f} min, {meta['steps']} steps, "
        f"held-out {meta['val_bpc']:.3f} bits/char, manifest {meta['manifest_sha256'][:12]}"
    )
    corpus = runs[0][2]["corpus"]
    print(
        f"repository: {args.held_out} ({corpus['train_files']} training, "
        f"{corpus['val_files']} held-out files); files whose content is in the base: {shared}"
    )
    print("| start | minutes | steps | held-out bits/char |\n| --- | --- | --- | --- |")
    print(f"| the base alone | 0 | 0 | {zero:.3f} |")
    for name, minutes, run in runs:
        print(f"| {name} | {minutes:g} | {run['steps']} | {run['val_bpc']:.3f} |")


if __name__ == "__main__":
    main()
