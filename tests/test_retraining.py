"""Keeping the model fresh: warm start, promotion, the watcher, hot swap, failures, rollback."""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from completiond.clients.client import Client
from completiond.completion.calibration import CALIBRATION_FILE
from completiond.core.bundle import ModelStore, sha256_file
from completiond.core.errors import BundleError
from completiond.core.index import INDEX_FILE
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.trainer import TrainerConfig
from completiond.daemon.watcher import WatchConfig
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig

from .conftest import TINY_MODEL, TINY_TRAIN, make_repo

PROBE = "def handler_5(request):\n    value = request.get("


def wait_until(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"not within {limit_s} s: {what}")


@pytest.fixture
def repo_and_store(
    tmp_path: Path, trained_store: ModelStore, fixture_repo: Path
) -> tuple[Path, Path]:
    """A repository of its own (tests edit it) and a copy of the trained store."""
    repo = tmp_path / "repo"
    shutil.copytree(fixture_repo, repo)
    shutil.copytree(trained_store.root, tmp_path / "store")
    return repo, tmp_path / "store"


def start_daemon(repo: Path, store: Path, tmp_path: Path, watch: bool = True) -> Daemon:
    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            trainer=TrainerConfig(minutes=0.05, threads=1, nice=0, model=TINY_MODEL),
            watch=WatchConfig(enabled=watch, quiet_s=0.3, min_interval_s=0.0),
        )
    )
    daemon.start(io.StringIO())
    return daemon


@pytest.fixture
def daemon(repo_and_store: tuple[Path, Path], tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(*repo_and_store, tmp_path)
    yield d
    d.close()


def test_a_store_without_an_index_gets_one_built_and_fitted_in_the_background(
    repo_and_store: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, store = repo_and_store
    (store / INDEX_FILE).unlink()  # as a store written before retrieval existed
    (store / CALIBRATION_FILE).unlink()
    daemon = start_daemon(repo, store, tmp_path, watch=False)
    try:
        assert daemon.slot.get().decoder.retriever.index is daemon.index
        assert daemon.runner.runs == 1  # fits the confidences
        wait_until(lambda: daemon.index.indexed_chars > 1000, 30, "the index built")
        assert daemon.index.freshness().rebuilds == 1
        wait_until(lambda: daemon.runner.state == "idle", 120, "the background run to finish")
        assert daemon.runner.last_result.startswith(("ok:", "rejected:")), daemon.runner.last_result
        assert (store / INDEX_FILE).exists() and (store / CALIBRATION_FILE).exists()
    finally:
        daemon.close()


def test_a_retrain_fine_tunes_and_is_promoted_only_if_not_worse(
    repo_and_store: tuple[Path, Path],
) -> None:
    repo, store_dir = repo_and_store
    store = ModelStore(store_dir)
    first = store.current_version()
    tiny = ModelConfig(**TINY_MODEL)
    fine = train_repository(
        repo, store, tiny, TrainConfig(minutes=5, **{**TINY_TRAIN, "max_steps": 60})
    )
    assert fine.bundle.meta["warm_start_from"] == first
    assert fine.promoted == (store.current_version() == fine.bundle.version)
    assert "on the same held-out files" in fine.reason
    # Six steps from scratch cannot match a trained model: kept aside, current unchanged.
    before = store.current_version()
    scratch = train_repository(
        repo,
        store,
        tiny,
        TrainConfig(minutes=5, warm_start=False, **{**TINY_TRAIN, "max_steps": 6}),
    )
    assert not scratch.promoted and scratch.bundle.meta["warm_start_from"] is None
    assert store.current_version() == before
    assert scratch.bundle.version in store.versions()


def test_an_edit_to_a_tracked_file_leads_to_a_new_model(daemon: Daemon) -> None:
    before = daemon.slot.get().version
    with (daemon.repo / "handlers_0.py").open("a") as f:
        f.write("\n\ndef brand_new(request):\n    return respond(request)\n")
    wait_until(lambda: daemon.runner.runs == 1, 20, "a retrain after the edit")
    wait_until(lambda: daemon.runner.state == "idle", 120, "the retrain to finish")
    assert daemon.runner.last_result.startswith(("ok:", "rejected:")), daemon.runner.last_result
    # Promoted or not, the new function is in the index that serves now.
    with Client(daemon.server.address) as client:
        reply = client.complete("import os\n\n\ndef brand_n", n=3)
    assert "ew(request):" in [c.text for c in reply.candidates]
    newest = daemon.slot.store.versions()[-1]
    assert newest != before
    if daemon.runner.last_result.startswith("ok:"):
        with Client(daemon.server.address) as client:
            assert client.complete(PROBE).model_version == newest == daemon.slot.get().version


def test_ignored_generated_and_unchanged_files_trigger_nothing(daemon: Daemon) -> None:
    repo = daemon.repo
    (repo / "secret_notes.py").write_text("password = 'changed'\n")  # in .gitignore
    (repo / "node_modules").mkdir()
    (repo / "node_modules" / "lib.js").write_text("var x = 1;\n")
    (repo / "poetry.lock").write_text("[[package]]\n")
    (repo / "api_pb2.py").write_text("# generated\n")
    (repo / "handlers_1.py").touch()  # saved, unchanged
    time.sleep(2.0)  # several quiet periods
    assert daemon.runner.runs == 0
    assert daemon.watcher.events_seen >= 1  # the touch (and the ignored file) were seen, checked


def test_a_burst_of_two_thousand_events_gives_one_retrain(daemon: Daemon) -> None:
    target = daemon.repo / "handlers_2.py"
    text = target.read_text()
    for i in range(2000):  # a formatter rewriting the same file over and over
        target.write_text(text + f"# pass {i}\n")
    wait_until(lambda: daemon.runner.runs >= 1, 30, "the retrain after the burst")
    time.sleep(1.5)
    assert daemon.runner.runs == 1
    assert daemon.watcher.events_seen >= 2000


def test_completions_keep_succeeding_through_a_swap(daemon: Daemon) -> None:
    seen: set[str] = set()
    failures: list[Exception] = []
    stop = threading.Event()

    def fire() -> None:
        with Client(daemon.server.address) as client:
            while not stop.is_set():
                try:
                    seen.add(client.complete(PROBE, document_id="doc").model_version)
                except Exception as exc:  # collected, asserted below
                    failures.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        final = list(Client(daemon.server.address, timeout_s=120).retrain(minutes=0.05))[-1]
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == []
    assert final.phase in ("done", "rejected"), final.message
    if final.phase == "done":
        assert final.model_version in seen and len(seen) == 2


def test_a_killed_training_child_leaves_the_old_model_serving(daemon: Daemon) -> None:
    before = daemon.slot.get().version
    job = daemon.runner.start(minutes=1.0)
    events = job.follow()
    assert next(events).phase == "starting"
    assert job._child is not None
    os.kill(job._child.pid, signal.SIGKILL)
    final = list(events)[-1]
    assert final.phase == "failed" and "killed by signal 9" in final.message
    assert daemon.slot.get().version == before
    with Client(daemon.server.address) as client:
        status = client.status()
        assert client.complete(PROBE).model_version == before
    assert status.last_training_result.startswith("failed:")
    assert status.training_state == "idle"


def corrupt_copy(store: ModelStore) -> str:
    """A bundle whose files match their recorded hashes but whose model is not an ONNX graph."""
    source = store.current()
    version = "29990101-000000-dead"
    bad = store.bundles_dir / version
    shutil.copytree(source.directory, bad)
    (bad / "model.onnx").write_bytes(b"not an onnx graph")
    meta = (bad / "meta.json").read_text()
    meta = meta.replace(source.version, version)
    meta = meta.replace(sha256_file(source.model_path), sha256_file(bad / "model.onnx"))
    (bad / "meta.json").write_text(meta)
    return version


def test_a_corrupt_new_bundle_is_refused_and_the_old_one_keeps_serving(
    daemon: Daemon, tmp_path: Path
) -> None:
    store = daemon.slot.store
    good = store.current_version()
    bad = corrupt_copy(store)
    store.set_current(bad)
    with pytest.raises(BundleError, match="cannot load"):
        daemon._on_published(bad)
    assert daemon.slot.get().version == good
    with Client(daemon.server.address) as client:
        assert client.complete(PROBE).model_version == good
    # A restart with `current` on the bad bundle serves the last good one at once.
    daemon.close()
    out = io.StringIO()
    again = Daemon(DaemonConfig(repo=daemon.repo, store=store.root,
                                server=ServerConfig(socket_path=tmp_path / "e.sock"),
                                watch=WatchConfig(enabled=False)))  # fmt: skip
    again.start(out)
    try:
        assert again.slot.get().version == good == store.current_version()
        assert "unusable" in out.getvalue() and f"last good model, {good}" in out.getvalue()
    finally:
        again.close()


def test_rollback_serves_the_previous_model(daemon: Daemon) -> None:
    first = daemon.slot.get().version
    final = list(Client(daemon.server.address, timeout_s=120).retrain(minutes=0.05))[-1]
    if final.phase != "done":
        pytest.skip(f"the short retrain was not promoted ({final.message})")
    with Client(daemon.server.address) as client:
        assert client.status().versions[-1] == final.model_version
        assert client.rollback().version == first
        assert client.complete(PROBE).model_version == first
        assert client.rollback(final.model_version).version == final.model_version


def test_a_fresh_repository_gets_a_quick_model_then_a_better_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "fresh", files=3)
    d = Daemon(
        DaemonConfig(
            repo=repo,
            store=tmp_path / "store",
            first_train_minutes=0.05,
            server=ServerConfig(socket_path=tmp_path / "f.sock"),
            trainer=TrainerConfig(minutes=0.05, threads=1, nice=0, model=TINY_MODEL),
            watch=WatchConfig(enabled=False),
        )
    )
    out = io.StringIO()
    d.start(out)
    try:
        started = time.monotonic()
        d.train_first_model(out)
        assert time.monotonic() - started < 60
        first = d.slot.get().version
        assert d.runner.runs == 2  # the background run started
        wait_until(lambda: d.runner.state == "idle", 120, "the background model")
        assert d.slot.store.versions()[-1] != first
        assert "serving model" in out.getvalue()
    finally:
        d.close()
