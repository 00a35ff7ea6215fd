"""Shared fixtures: a small real repository, a tiny trained bundle, a running daemon."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from completiond.core.bundle import ModelStore
from completiond.daemon.daemon import Daemon, DaemonConfig

HANDLER = """def handler_{i}(request):
    value = request.get("key_{i}")
    if value is None:
        return respond(None)
    return respond(value)


"""


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Keep the user's git configuration, cache and runtime dirs out of the tests."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        env=env,
    )


def make_repo(root: Path, files: int = 6, handlers: int = 12) -> Path:
    """A small git repository of very regular Python, so that a tiny model learns it fast."""
    root.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        body = "".join(HANDLER.format(i=f * 100 + i) for i in range(handlers))
        (root / f"handlers_{f}.py").write_text("import os\n\n\n" + body)
    (root / ".gitignore").write_text("secret_notes.py\n")
    (root / "secret_notes.py").write_text("password = 'hunter2'\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "fixture")
    return root


@pytest.fixture(scope="session")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "project")


TINY_MODEL = {"hidden_size": 48, "embed_dim": 16, "dropout": 0.0}
TINY_TRAIN = {
    "max_steps": 400,
    "seq_len": 64,
    "batch_size": 16,
    "lr": 1e-2,
    "threads": 2,
    "eval_interval_s": 1e9,
}


@pytest.fixture(scope="session")
def trained_store(fixture_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding one tiny model trained for a fixed number of steps (deterministic)."""
    from completiond.training.model import ModelConfig
    from completiond.training.run import train_repository
    from completiond.training.train import TrainConfig

    store = ModelStore(tmp_path_factory.mktemp("store"))
    train_repository(
        fixture_repo, store, ModelConfig(**TINY_MODEL), TrainConfig(minutes=5, **TINY_TRAIN)
    )
    return store


@pytest.fixture
def running_daemon(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> Iterator[Daemon]:
    """A real daemon serving the tiny model on a temporary Unix socket, in this process."""
    from completiond.daemon.server import ServerConfig
    from completiond.daemon.trainer import TrainerConfig
    from completiond.daemon.watcher import WatchConfig

    store = tmp_path / "store"  # a copy: retraining must not change other tests' model
    shutil.copytree(trained_store.root, store)
    daemon = Daemon(
        DaemonConfig(
            repo=fixture_repo,
            store=store,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            trainer=TrainerConfig(minutes=0.05, threads=1, model=TINY_MODEL),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    yield daemon
    daemon.close()
