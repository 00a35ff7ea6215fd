"""Shared fixtures: a small real repository, a tiny trained bundle, a running daemon."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from completiond.core.bundle import ModelStore
from completiond.daemon.daemon import Daemon, DaemonConfig

from .lsp_session import LspSession, lsp_sessions

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
    "cache_fit_lines": 20,
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


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA that signed `cert`: what clients trust
    cert: Path  # the daemon's certificate, for 127.0.0.1 and localhost
    key: Path  # its private key, mode 600
    other_ca: Path  # a CA that signed nothing here


_OPENSSL_CONFIG = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = completiond test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
subjectAltName = IP:127.0.0.1, DNS:localhost
extendedKeyUsage = serverAuth
"""


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _new_ca(directory: Path, name: str) -> None:
    _openssl(
        directory, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
    )  # fmt: skip


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a daemon certificate it signed, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    directory = tmp_path_factory.mktemp("tls")
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    _new_ca(directory, "ca")
    _new_ca(directory, "other-ca")
    _openssl(
        directory, "req", "-new", "-config", "openssl.cnf", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr",
    )  # fmt: skip
    _openssl(
        directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "1", "-days", "2", "-extfile", "openssl.cnf", "-extensions", "server",
        "-out", "server.pem",
    )  # fmt: skip
    os.chmod(directory / "server.key", 0o600)
    return TlsFiles(
        directory / "ca.pem", directory / "server.pem", directory / "server.key",
        directory / "other-ca.pem",
    )  # fmt: skip


@pytest.fixture
def start_lsp(tmp_path: Path) -> Iterator[Callable[..., LspSession]]:
    """Starts bridges (`completiond lsp ARGS...`) over stdio; every one is killed at the end."""
    yield from lsp_sessions(tmp_path)


def serve_pids(root: Path) -> list[int]:
    """Live `completiond serve --repo root` processes (a zombie's command line is empty)."""
    wanted = f"completiond.clients.cli\0serve\0--repo\0{root}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue  # it exited meanwhile
    return pids
