"""The base model a daemon builds while nobody types (`serve --pretrain-when-idle`): a real
daemon on a Unix socket, a real `completiond pretrain` child learning from a tiny directory of
Python files, a real client; quiet periods and budgets of seconds."""

from __future__ import annotations

import io
import json
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from completiond.clients.client import Client
from completiond.clients.render import status_rows
from completiond.core.bundle import ModelStore
from completiond.core.discovery import BASE_META, base_lock, bases_dir, read_base_meta
from completiond.core.errors import TrainingBusy
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.idle_base import LOG_FILE, IdleBaseConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.trainer import TrainerConfig
from completiond.daemon.watcher import WatchConfig

from .conftest import HANDLER, TINY_TRAIN
from .test_cli import run_cli

QUIET_MINUTES = 0.01  # 0.6 s without completion requests
# The shape `serve --hidden-size 16` asks for: the only model options pretrain takes.
MODEL = {"hidden_size": 16}
# Seconds instead of minutes: a 6-second base, checkpointed twice.
TINY_BUILD = {"quiet_minutes": QUIET_MINUTES, "minutes": 0.1, "checkpoint_minutes": 0.05}
LINE = '    value = request.get("key_1")\n    if value is N'


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Code "installed on the machine": a few Python modules none of the repository's."""
    root = tmp_path / "installed"
    root.mkdir()
    for i in range(4):
        body = "".join(HANDLER.format(i=5000 + i * 10 + h) for h in range(6))
        (root / f"mod_{i}.py").write_text("import sys\n\n\n" + body)
    return root


@pytest.fixture
def start_daemon(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    """Starts a daemon serving a copy of the tiny model, idle build configured by the
    keywords; every one is closed at the end."""
    started: list[Daemon] = []

    def start(**idle: object) -> Daemon:
        store = tmp_path / "store"
        shutil.copytree(trained_store.root, store)
        daemon = Daemon(
            DaemonConfig(
                repo=fixture_repo,
                store=store,
                server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
                trainer=TrainerConfig(
                    minutes=0.05, threads=1, model=MODEL, train={**TINY_TRAIN, "max_steps": 20}
                ),
                watch=WatchConfig(enabled=False),
                idle_base=IdleBaseConfig(**{**TINY_BUILD, **idle}),
            )
        )
        daemon.start(io.StringIO())
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def wait_until(what: Callable[[], bool], limit_s: float, why: Callable[[], object]) -> None:
    deadline = time.monotonic() + limit_s
    while not what():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {limit_s} s: {why()}")
        time.sleep(0.1)


def build_row(daemon: Daemon) -> str:
    with Client(daemon.server.address, timeout_s=30) as client:
        status = MessageToDict(client.status(), always_print_fields_with_no_presence=True)
    return dict(status_rows(status))["base build"]


def test_off_by_default(running_daemon: Daemon, tmp_path: Path, sources: Path) -> None:
    time.sleep(1.5)  # a quiet period of the daemon's own would have begun a build by now
    assert running_daemon.base_builder.state.state == "off"
    assert not (running_daemon.slot.store.root / LOG_FILE).exists()
    assert build_row(running_daemon).startswith("off (`serve --pretrain-when-idle` builds ")
    refused = run_cli("serve", "--pretrain-from", str(sources), cwd=tmp_path)
    assert refused.returncode == 1
    assert "--pretrain-from goes with --pretrain-when-idle" in refused.stderr
    missing = tmp_path / "missing"
    refused = run_cli(
        "serve", "--pretrain-when-idle", "--pretrain-from", str(missing), cwd=tmp_path
    )
    assert refused.returncode == 1 and f"not a directory: {missing}" in refused.stderr


def test_the_base_is_built_when_idle_then_the_model_trains_from_it(
    start_daemon: Callable[..., Daemon], sources: Path
) -> None:
    daemon = start_daemon(enabled=True, sources=[sources])
    builder = daemon.base_builder
    wait_until(lambda: builder.state.state == "finished", 60, lambda: builder.state)
    base = read_base_meta(bases_dir() / "python")
    assert base is not None and base["seconds"] >= 0.1 * 60 - 1.0
    assert base["model"]["hidden_size"] == 16 and base["roots"] == [str(sources.resolve())]
    log_path = daemon.slot.store.root / LOG_FILE
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    # Then one training run, which starts from the base (the served model is of another
    # shape): promoted or kept aside, its bundle says so.
    runner = daemon.runner
    wait_until(lambda: runner.runs == 1 and runner.state == "idle", 60, lambda: runner.job)
    assert runner.last_result.startswith(("ok:", "rejected:")), runner.last_result
    newest = daemon.slot.store.versions()[-1]
    meta = json.loads((daemon.slot.store.bundles_dir / newest / "meta.json").read_text())
    assert meta["base"]["manifest_sha256"] == base["manifest_sha256"]
    assert meta["base"]["steps"] == base["steps"]
    assert build_row(daemon).startswith("finished: the python base; python base in ")


def test_completion_requests_pause_the_build_and_the_lock_keeps_a_second_builder_out(
    start_daemon: Callable[..., Daemon], sources: Path
) -> None:
    with base_lock(bases_dir() / "python"):  # another daemon building the python base
        daemon = start_daemon(enabled=True, sources=[sources])
        builder = daemon.base_builder
        wait_until(lambda: "another process" in builder.state.message, 10, lambda: builder.state)
        time.sleep(1.5)
        assert builder.job is None and not (daemon.slot.store.root / LOG_FILE).exists()
        assert "another process is building the python base" in build_row(daemon)
    wait_until(lambda: builder.state.state == "running", 10, lambda: builder.state)
    job = builder.job
    assert job is not None
    with Client(daemon.server.address, timeout_s=30) as client:
        for _ in range(3):  # status calls are no activity
            client.status()
            time.sleep(0.5)
        assert builder.state.state == "running" and builder.job is job
        for _ in range(15):  # someone types: paused at once, and not resumed while it goes on
            client.complete(LINE)
            time.sleep(0.1)
        child = job._child
        assert child is not None and child.poll() is not None  # the build was killed
        assert builder.state.state == "waiting" and builder.job is job
        assert "paused by completion requests" in build_row(daemon)
    # A quiet period later it starts again (the checkpoint, if any, is resumed).
    wait_until(lambda: builder.job is not job, 10, lambda: builder.state)
    assert builder.state.state == "running"


def test_a_failed_build_never_harms_serving_and_is_given_up_on(
    start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    daemon = start_daemon(enabled=True, sources=[empty], max_failures=2)
    builder = daemon.base_builder
    wait_until(lambda: builder.state.state == "failed", 60, lambda: builder.state)
    assert builder.state.failures == 2
    assert "0 trainable file(s) found for the base" in builder.state.message
    row = build_row(daemon)
    assert row.startswith("failed 2 times, stopped trying: completiond: 0 trainable file(s)")
    assert daemon.runner.runs == 0 and not (bases_dir() / "python" / BASE_META).exists()
    with Client(daemon.server.address, timeout_s=30) as client:
        assert client.complete(LINE).candidates


def test_pretrain_refuses_to_build_a_base_another_process_builds(tmp_path: Path) -> None:
    from completiond.training.model import ModelConfig
    from completiond.training.pretrain import pretrain
    from completiond.training.train import TrainConfig

    directory = bases_dir() / "python"
    with base_lock(directory), pytest.raises(TrainingBusy, match="another process is building"):
        pretrain("python", [tmp_path], directory, None, ModelConfig(), TrainConfig())
