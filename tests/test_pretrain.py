"""Base models: `completiond pretrain` from code outside the repository, and repository models
starting from the base of their language."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from completiond.core.bundle import ModelStore
from completiond.core.discovery import (
    BASE_MANIFEST,
    BASE_META,
    BASE_TOKENIZER,
    BASE_WEIGHTS,
    bases_dir,
    discover_roots,
    language_of,
    list_bases,
    text_hash,
)
from completiond.core.tokenizer import CharTokenizer

from .conftest import HANDLER, TINY_MODEL, TINY_TRAIN, git, make_repo

CLI = [sys.executable, "-m", "completiond.clients.cli"]


def _module(i: int, handlers: int = 6) -> str:
    """A small Python file of regular code, different for every `i`."""
    return "import sys\n\n\n" + "".join(HANDLER.format(i=i * 50 + h) for h in range(handlers))


@pytest.fixture
def installed_code(tmp_path: Path) -> Path:
    """A directory of code as found on a machine: distinct modules, one duplicated elsewhere
    in the tree, one equal to a file of the repository, and files of no Python extension; in
    a git work tree that ignores it (as pyenv's checkout ignores its installed versions)."""
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("site/\n")
    root = tmp_path / "site"
    (root / "pkg" / "sub").mkdir(parents=True)
    for i in range(5):
        (root / "pkg" / f"mod_{i}.py").write_text(_module(i))
    (root / "pkg" / "sub" / "copy_of_mod_0.py").write_text(_module(0))
    (root / "pkg" / "header.h").write_text("int f(void);\n")
    (root / "pkg" / "notes.md").write_text("# notes\n")
    return root


@pytest.fixture
def repo(tmp_path: Path, installed_code: Path) -> Path:
    root = make_repo(tmp_path / "project", files=3, handlers=8)
    (installed_code / "pkg" / "vendored_from_repo.py").write_text(
        (root / "handlers_0.py").read_text()
    )
    return root


def _pretrain(roots: list[Path], repo: Path | None, **train: object):
    from completiond.training.model import ModelConfig
    from completiond.training.pretrain import pretrain
    from completiond.training.train import TrainConfig

    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 30, "threads": 1, **train})
    return pretrain(
        "python", roots, bases_dir() / "python", repo, ModelConfig(**TINY_MODEL), config
    )


def test_discovery_finds_the_interpreters_code_and_a_repositorys_language() -> None:
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert any(root == stdlib or root in stdlib.parents for root in discover_roots("python"))
    assert language_of(["a.py", "b.py", "x.h", "README.md"]) == "python"
    assert language_of(["a.c", "a.h", "b.cpp", "setup.py"]) == "c"
    assert language_of(["README.md"]) is None


def test_pretrain_builds_a_private_base_of_distinct_files_none_from_the_repository(
    installed_code: Path, repo: Path
) -> None:
    result = _pretrain([installed_code], repo)
    base = bases_dir() / "python"
    meta = json.loads((base / BASE_META).read_text())
    manifest = json.loads((base / BASE_MANIFEST).read_text())["files"]
    # 5 distinct modules: the copy and the repository's file are left out, and so are the
    # files of other languages.
    assert len(manifest) == 5 == meta["train_files"] + meta["val_files"]
    assert meta["skipped"]["duplicate"] == 1 and meta["skipped"]["in_repository"] == 1
    assert text_hash((repo / "handlers_0.py").read_text()) not in manifest.values()
    assert all(path.endswith(".py") and "copy_of" not in path for path in manifest)
    assert meta["manifest_sha256"] == result.meta["manifest_sha256"]
    assert meta["steps"] == 30 and 0 < meta["val_bpc"] < 8
    assert list(list_bases()) == ["python"]
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    for path in base.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert sorted(p.name for p in base.iterdir()) == sorted(
        [
            BASE_META,
            BASE_MANIFEST,
            BASE_TOKENIZER,
            BASE_WEIGHTS,
            "checkpoint.json",
            "checkpoint.npz",
        ]
    )  # the checkpoint stays: a larger budget continues the base


def test_a_larger_budget_continues_a_finished_base(installed_code: Path) -> None:
    first = _pretrain([installed_code], None, max_steps=0, minutes=0.03)
    second = _pretrain([installed_code], None, max_steps=0, minutes=0.06)
    assert second.resumed and second.meta["segments"] > first.meta["segments"]
    assert second.meta["steps"] > first.meta["steps"]
    assert second.meta["seconds"] >= 0.06 * 60 - 1.0


def test_a_segment_worse_than_the_best_so_far_leaves_the_base_as_it_was(
    installed_code: Path,
) -> None:
    first = _pretrain([installed_code], None, max_steps=0, minutes=0.03)
    with np.load(first.directory / BASE_WEIGHTS) as published:
        weights = {name: published[name] for name in published.files}
    # A learning rate far too high for the continuation: its segment ends worse.
    second = _pretrain([installed_code], None, max_steps=0, minutes=0.06, lr=30.0)
    assert second.resumed and second.meta["segments"] > first.meta["segments"]
    assert second.meta["val_bpc"] == first.meta["val_bpc"]
    with np.load(second.directory / BASE_WEIGHTS) as kept:
        assert kept.files == list(weights)
        assert all(np.array_equal(kept[name], weights[name]) for name in kept.files)


def test_a_base_whose_files_do_not_match_its_metadata_is_not_one(installed_code: Path) -> None:
    _pretrain([installed_code], None)
    (bases_dir() / "python" / BASE_WEIGHTS).write_bytes(b"torn")
    assert list_bases() == {}


def _cli_pretrain(source: Path, repo: Path, **kw: object) -> subprocess.Popen[str]:
    args = ["pretrain", "--repo", str(repo), "--from", str(source), "--minutes", "0.12"]
    args += ["--checkpoint-minutes", "0.03", "--hidden-size", "16", "--threads", "1"]
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_a_killed_pretrain_resumes_from_its_last_checkpoint(
    installed_code: Path, repo: Path
) -> None:
    base = bases_dir() / "python"
    first = _cli_pretrain(installed_code, repo)
    deadline = time.monotonic() + 60
    while not (base / "checkpoint.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    saved = json.loads((base / "checkpoint.json").read_text())["progress"]
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert not (base / BASE_META).exists()  # no base until the whole budget is spent
    second = _cli_pretrain(installed_code, repo)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "(resumed)" in out
    meta = json.loads((base / BASE_META).read_text())
    assert meta["segments"] > saved["segments"] and meta["steps"] > saved["steps"]
    assert meta["seconds"] >= 0.12 * 60 - 1.0  # the budget counts the killed run's time


def test_pretrain_without_code_to_learn_from_fails_clearly(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = _cli_pretrain(tmp_path / "empty", repo)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and "0 trainable file(s) found for the base" in err


def test_a_repository_model_starts_from_the_base_of_its_language(
    installed_code: Path, repo: Path, tmp_path: Path
) -> None:
    from completiond.training.model import ModelConfig
    from completiond.training.run import prepare, train_repository
    from completiond.training.train import TrainConfig

    (repo / "naïve.py").write_text("café = 'ü' * 3 + 'ü' + 'ü'\n")  # characters the base lacks
    built = _pretrain([installed_code], None)
    base_dir = bases_dir() / "python"
    base_tokenizer = CharTokenizer.from_json((base_dir / BASE_TOKENIZER).read_text())
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 20, "threads": 1})
    prepared = prepare(repo, ModelStore(tmp_path / "s0"), ModelConfig(**TINY_MODEL), config, None,
                       lambda _: None)  # fmt: skip
    # The base's alphabet, then the repository's own characters; the base's weights for it.
    assert prepared.tokenizer.chars[: len(base_tokenizer.chars)] == base_tokenizer.chars
    assert "ü" in prepared.tokenizer.chars[len(base_tokenizer.chars) :]
    with np.load(base_dir / BASE_WEIGHTS) as arrays:
        assert np.array_equal(
            prepared.weights["lstm.weight_hh_l0"].numpy(), arrays["lstm.weight_hh_l0"]
        )
        assert prepared.weights["embed.weight"].shape[0] == prepared.tokenizer.vocab_size
    store = ModelStore(tmp_path / "store")
    meta = train_repository(repo, store, ModelConfig(**TINY_MODEL), config).bundle.meta
    assert meta["base"]["language"] == "python"
    assert meta["base"]["manifest_sha256"] == built.meta["manifest_sha256"]
    status = subprocess.run(
        [*CLI, "status", "--repo", str(repo), "--store", str(store.root), "--json"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    shown = json.loads(status.stdout)
    assert shown["modelBase"]["manifest_sha256"] == built.meta["manifest_sha256"]
    assert list(shown["bases"]) == ["python"]


def test_without_a_fitting_base_a_repository_model_trains_as_before(
    installed_code: Path, repo: Path, tmp_path: Path
) -> None:
    from completiond.training.model import ModelConfig
    from completiond.training.run import prepare, train_repository
    from completiond.training.train import TrainConfig

    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 20, "threads": 1})
    alone = train_repository(repo, ModelStore(tmp_path / "a"), ModelConfig(**TINY_MODEL), config)
    assert alone.bundle.meta["base"] is None
    _pretrain([installed_code], None)
    other_shape = ModelConfig(**{**TINY_MODEL, "hidden_size": 24})
    # A base of another shape does not apply.
    prepared = prepare(repo, ModelStore(tmp_path / "b"), other_shape, config, None, lambda _: None)
    assert prepared.base is None and prepared.weights is None


def test_a_model_older_than_the_base_starts_over_from_it_once(
    installed_code: Path, repo: Path, tmp_path: Path
) -> None:
    """A base built (or trained further) after the model: the next run starts from the base
    instead of fine-tuning, once; `--full` always does."""
    from completiond.training.model import ModelConfig
    from completiond.training.run import prepare, train_repository
    from completiond.training.train import TrainConfig

    model = ModelConfig(**TINY_MODEL)
    config = TrainConfig(**{**TINY_TRAIN, "max_steps": 20, "threads": 1})
    store = ModelStore(tmp_path / "store")
    first = train_repository(repo, store, model, config).bundle.version  # before any base

    def start() -> tuple[str, dict | None]:
        prepared = prepare(repo, store, model, config, None, lambda _: None)
        return ("fine-tunes" if prepared.fine_tunes else prepared.how), prepared.base

    assert start() == ("fine-tunes", None)
    built = _pretrain([installed_code], None).meta
    how, base = start()
    assert how == f"starting from the python base (newer than model {first})"
    assert base is not None and base["manifest_sha256"] == built["manifest_sha256"]
    train_repository(repo, store, model, config)  # from the base: promoted or kept aside
    store.set_current(first)  # either way the model from the base is not the one served
    assert start() == ("fine-tunes", None)  # tried once: fine-tuning serves better
    full = TrainConfig(**{**TINY_TRAIN, "warm_start": False})
    prepared = prepare(repo, store, model, full, None, lambda _: None)
    assert prepared.base == base and not prepared.fine_tunes  # --full: from the base
    # The base trained further is another one: started from once more.
    longer = _pretrain([installed_code], None, max_steps=0, minutes=0.03).meta
    assert longer["manifest_sha256"] == built["manifest_sha256"]
    assert longer["steps"] != built["steps"]
    how, base = start()
    assert how.startswith("starting from the python base") and base["steps"] == longer["steps"]
