"""What another local user, or the repository being read, can do to the user: nothing runs,
nothing leaks, nothing is intercepted."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.corpus import read_files, read_texts
from completiond.core.errors import TrainingBusy, UnsafePath
from completiond.core.files import select_files
from completiond.core.locations import check_socket, default_socket_path
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.trainer import TrainerConfig, TrainingRunner
from completiond.daemon.watcher import WatchConfig
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig

from .conftest import TINY_MODEL, TINY_TRAIN, git, make_repo

NOBODY = 65534  # another user's id, for files this test (as root) hands to someone else
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="giving a file away needs root")


def booby_trap(directory: Path, marker: Path) -> None:
    """Modules that, if ever imported, leave `marker` behind."""
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    for module in ("json.py", "argparse.py", "typing_extensions.py"):
        (directory / module).write_text(payload)
    (directory / "numpy").mkdir()
    (directory / "numpy" / "__init__.py").write_text(payload)


def test_the_training_child_never_imports_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", files=2, handlers=4)
    marker = tmp_path / "pwned"
    booby_trap(repo, marker)
    # The daemon started inside the repository, as `completiond serve --repo .` is.
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PYTHONPATH", str(repo))
    config = TrainerConfig(minutes=0.02, threads=1, nice=0, model=TINY_MODEL)
    published: list[str] = []
    runner = TrainingRunner(repo, tmp_path / "store", config, published.append)
    final = list(runner.start().follow())[-1]
    assert not marker.exists(), "the training child imported a module of the repository"
    assert final.phase == "done", final.message
    assert published


def test_listing_files_runs_no_program_the_repository_configures(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files=1, handlers=1)
    marker = tmp_path / "pwned"
    git(repo, "config", "core.fsmonitor", f"touch {marker}; echo")
    texts, _ = read_files(repo)
    assert texts
    assert not marker.exists(), "git ran the repository's core.fsmonitor program"


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }


def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files=2, handlers=4)
    store_root = tmp_path / "cache" / "completiond" / "project"
    old = os.umask(0o022)
    try:
        train_repository(
            repo,
            ModelStore(store_root),
            ModelConfig(**TINY_MODEL),
            TrainConfig(minutes=1, **{**TINY_TRAIN, "max_steps": 20}),
        )
        Daemon(DaemonConfig(repo=repo, store=store_root, watch=WatchConfig(enabled=False)))
    finally:
        os.umask(old)
    found = modes(tmp_path / "cache")
    assert any(name.endswith("index.npz") for name in found)
    assert any(name.endswith("model.onnx") for name in found)
    for name, mode in found.items():
        private = 0o700 if (tmp_path / "cache" / name).is_dir() else 0o600
        assert mode == private, f"{name} is {oct(mode)}"


def test_an_old_store_readable_by_others_is_made_private(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)
    (store / "train.log").write_text("old\n")
    os.chmod(store / "train.log", 0o644)
    runner = TrainingRunner(tmp_path, store, TrainerConfig(), print)
    job = runner.start(minutes=0.01)  # the child fails at once: no repository here
    list(job.follow())
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / "train.log").stat().st_mode) == 0o600


def test_one_training_run_at_a_time_per_store(fixture_repo: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    with store.training_lock(), pytest.raises(TrainingBusy, match="another training run"):
        train_repository(fixture_repo, store, ModelConfig(**TINY_MODEL), TrainConfig(minutes=1))
    assert store.current_version() is None
    with store.training_lock():  # released when the holder is done
        pass


# --- Files that change between selection and reading -----------------------------------------


def test_a_file_turned_into_a_symlink_after_selection_is_not_read(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files=2, handlers=1)
    outside = tmp_path / "credentials.py"
    outside.write_text("aws_key_material = 'do not index me'\n")
    chosen = select_files(repo).files
    (repo / "handlers_0.py").unlink()
    (repo / "handlers_0.py").symlink_to(outside)
    texts = read_texts(repo, chosen)
    assert "handlers_0.py" not in texts
    assert not any("do not index me" in t for t in texts.values())


def test_a_directory_turned_into_a_symlink_after_selection_is_not_followed(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    chosen = select_files(repo).files
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "mod.py").write_text("secret_plan = 'leak'\n")
    os.rename(repo / "pkg", tmp_path / "moved")
    (repo / "pkg").symlink_to(tmp_path / "private")
    assert read_texts(repo, chosen) == {}


def test_a_file_turned_into_a_fifo_or_a_device_link_does_not_hang(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files=2, handlers=1)
    chosen = select_files(repo).files
    (repo / "handlers_0.py").unlink()
    os.mkfifo(repo / "handlers_0.py")
    (repo / "handlers_1.py").unlink()
    (repo / "handlers_1.py").symlink_to("/dev/zero")
    result: list[dict[str, str]] = []
    reader = threading.Thread(target=lambda: result.append(read_texts(repo, chosen)))
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO or /dev/zero hung"
    assert set(result[0]) == set()


def test_a_file_grown_past_the_limit_after_selection_is_not_read(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", files=1, handlers=1)
    chosen = select_files(repo).files
    with (repo / "handlers_0.py").open("a") as f:
        f.write("x = 1\n" * 100_000)
    assert read_texts(repo, chosen) == {}


# --- The socket: nobody else can squat it, swap it or fake it ---------------------------------


@pytest.fixture
def no_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No XDG_RUNTIME_DIR: the socket goes to a directory of the shared temporary directory
    (a short one: Unix socket paths are limited to about 100 bytes)."""
    shared = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
    os.chmod(shared, 0o1777)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    yield shared
    shutil.rmtree(shared, ignore_errors=True)


def start_daemon(repo: Path, store: Path, socket_path: Path | None) -> Daemon:
    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store,
            server=ServerConfig(socket_path=socket_path, grace_s=0.5),
            watch=WatchConfig(enabled=False),
        )
    )
    daemon.start(io.StringIO())
    return daemon


@pytest.fixture
def store_copy(trained_store: ModelStore, tmp_path: Path) -> Path:
    shutil.copytree(trained_store.root, tmp_path / "store")
    return tmp_path / "store"


def test_the_default_socket_directory_is_private(
    no_runtime_dir: Path, fixture_repo: Path, store_copy: Path
) -> None:
    daemon = start_daemon(fixture_repo, store_copy, None)
    try:
        path = default_socket_path(fixture_repo)
        assert path.parent.parent == no_runtime_dir
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with Client(f"unix://{path}") as client:
            assert client.status().model.version
    finally:
        daemon.close()


@needs_root
def test_a_socket_directory_made_by_another_user_is_refused(
    no_runtime_dir: Path, fixture_repo: Path, store_copy: Path
) -> None:
    squatted = default_socket_path(fixture_repo).parent
    squatted.mkdir(mode=0o777)
    os.chown(squatted, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="not you"):
        start_daemon(fixture_repo, store_copy, None)


@needs_root
def test_clients_refuse_a_socket_of_another_user(tmp_path: Path) -> None:
    path = tmp_path / "fake.sock"
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(str(path))
    try:
        os.chown(path, NOBODY, NOBODY)
        with pytest.raises(UnsafePath, match="not a socket of yours"):
            Client(f"unix://{path}")
    finally:
        fake.close()


def test_clients_refuse_a_socket_in_a_directory_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o777)
    path = shared / "d.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    try:
        with pytest.raises(UnsafePath, match="writable by others"):
            check_socket(path)
        os.chmod(shared, 0o1777)  # sticky, like /tmp: others cannot swap a file of yours
        check_socket(path)
    finally:
        listener.close()


def test_an_explicit_socket_leaves_its_existing_directory_alone(
    tmp_path: Path, fixture_repo: Path, store_copy: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    daemon = start_daemon(fixture_repo, store_copy, home / "d.sock")
    try:
        assert stat.S_IMODE(home.stat().st_mode) == 0o755
        assert stat.S_IMODE((home / "d.sock").stat().st_mode) == 0o600
    finally:
        daemon.close()
