"""The index follows every save, per file and durably; a fine-tune is sized to the change."""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.index import INDEX_FILE, RepoIndex, index_repository
from completiond.daemon.daemon import Daemon, DaemonConfig
from completiond.daemon.live_index import INDEX_UPDATES_FILE, LiveIndex, LiveIndexConfig
from completiond.daemon.server import ServerConfig
from completiond.daemon.trainer import TrainerConfig
from completiond.daemon.watcher import WatchConfig

from .conftest import TINY_MODEL, git, make_repo
from .test_local_attacker import booby_trap
from .test_retraining import wait_until

HELPER = "\n\ndef zebra_quantile_helper(request):\n    return respond(request)\n"
WORD = re.compile(r"\w+|[^\w\s]")


def start(repo: Path, store: Path, tmp_path: Path, **trainer: float) -> Daemon:
    """A real daemon watching `repo`; retrains wait for 30 quiet seconds unless told."""
    quiet = trainer.pop("quiet_s", 30.0)
    daemon = Daemon(
        DaemonConfig(
            repo=repo,
            store=store,
            server=ServerConfig(socket_path=tmp_path / "d.sock", grace_s=1.0),
            trainer=TrainerConfig(
                **{"minutes": 0.05, "threads": 1, "nice": 0, "model": TINY_MODEL, **trainer}
            ),
            watch=WatchConfig(enabled=True, quiet_s=quiet, min_interval_s=0.0),
        )
    )
    daemon.start(io.StringIO())
    return daemon


@pytest.fixture
def repo_and_store(
    tmp_path: Path, trained_store: ModelStore, fixture_repo: Path
) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    shutil.copytree(fixture_repo, repo)  # file times kept: the store's index matches it
    shutil.copytree(trained_store.root, tmp_path / "store")
    return repo, tmp_path / "store"


@pytest.fixture
def daemon(repo_and_store: tuple[Path, Path], tmp_path: Path) -> Iterator[Daemon]:
    d = start(*repo_and_store, tmp_path)
    wait_until(lambda: d.index.freshness().pending_files == 0, 10, "the start-up check")
    yield d
    d.close()


def offered(daemon: Daemon, prefix: str) -> list[str]:
    with Client(daemon.server.address) as client:
        reply = client.complete(prefix, path="handlers_3.py", document_id="other", n=5)
    return [c.text for c in reply.candidates]


def test_a_saved_name_is_offered_in_another_file_and_a_deleted_line_stops_being(
    daemon: Daemon,
) -> None:
    assert daemon.index.freshness().rebuilds == 0  # the stored index matched the files
    assert not any(t.startswith("antile_helper") for t in offered(daemon, "x = zebra_qu"))
    target = daemon.repo / "handlers_0.py"
    original = target.read_text()
    saved = time.monotonic()
    target.write_text(original + HELPER)
    wait_until(
        lambda: any(t.startswith("antile_helper") for t in offered(daemon, "x = zebra_qu")),
        10,
        "the saved name offered in another file",
    )
    print(f"offered {time.monotonic() - saved:.2f} s after the save")
    assert daemon.runner.runs == 0  # the index did it, not a retrain
    fresh = daemon.index.freshness()
    assert (fresh.updated_files, fresh.pending_files, fresh.rebuilds) == (1, 0, 0)
    assert fresh.updated_unix > time.time() - 10
    # What is served is on disk, private: a restart serves it before looking at any file.
    updates = daemon.slot.store.root / INDEX_UPDATES_FILE
    assert (
        "zebra_quantile_helper" in json.loads(updates.read_text())["files"]["handlers_0.py"]["text"]
    )
    for name in (INDEX_UPDATES_FILE, INDEX_FILE):
        assert stat.S_IMODE((daemon.slot.store.root / name).stat().st_mode) == 0o600
    again = LiveIndex(daemon.repo, daemon.slot.store.root)
    again.load()
    assert again.continuations("zebra_qu", 10) == {"antile_helper(request):": 1}

    target.write_text(original)  # the line deleted again
    wait_until(
        lambda: not any(t.startswith("antile_helper") for t in offered(daemon, "x = zebra_qu")),
        10,
        "the deleted line no longer offered",
    )
    assert daemon.index.freshness().updated_files == 0  # back as the full index has it


def test_a_removed_file_stops_being_offered_and_a_new_one_is(daemon: Daemon) -> None:
    probe = "def handler_503(request):\n    value = request.get("
    assert '"key_503")' in offered(daemon, probe)
    old = (daemon.repo / "handlers_5.py").read_text()
    (daemon.repo / "handlers_5.py").unlink()
    (daemon.repo / "renamed.py").write_text(old.replace("_5", "_7"))
    wait_until(lambda: '"key_503")' not in offered(daemon, probe), 10, "the removed file gone")
    wait_until(
        lambda: '"key_703")' in offered(daemon, probe.replace("_5", "_7")),
        10,
        "the new file offered",
    )


def test_changes_made_while_the_daemon_was_stopped_are_applied_at_start(
    repo_and_store: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, store = repo_and_store
    with (repo / "handlers_1.py").open("a") as f:
        f.write(HELPER)
    index = LiveIndex(repo, store)
    index.load()
    assert index.continuations("zebra_qu", 10) == {}
    index.start()
    try:
        wait_until(lambda: index.continuations("zebra_qu", 10) != {}, 10, "the start-up check")
        assert index.freshness().rebuilds == 0  # one file read, not the repository
    finally:
        index.stop()


def test_an_index_from_before_file_tables_serves_until_it_is_rebuilt(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("import os\n")
    RepoIndex.build(["import os\n"]).save(tmp_path / "store" / INDEX_FILE)  # no FileTable
    index = LiveIndex(repo, tmp_path / "store")
    index.load()
    assert index.continuations("import ", 10) == {"os": 1}
    assert index.fingerprint() is None  # which files it holds is unknown
    index.start()
    try:
        wait_until(lambda: index.fingerprint() is not None, 30, "the rebuilt index")
        assert index.freshness().rebuilds == 1
        assert index.continuations("import ", 10) == {"os": 1}
    finally:
        index.stop()


def test_the_index_child_never_imports_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", files=2, handlers=4)
    marker = tmp_path / "pwned"
    booby_trap(repo, marker)
    monkeypatch.chdir(repo)  # the daemon started inside the repository
    monkeypatch.setenv("PYTHONPATH", str(repo))
    index = LiveIndex(repo, tmp_path / "store")
    index.load()
    index.start()  # no index yet: the child builds one
    try:
        wait_until(lambda: index.fingerprint() is not None, 30, "the index built")
    finally:
        index.stop()
    assert not marker.exists(), "the index child imported a module of the repository"


def single_line_pieces(texts: list[str]) -> set[str]:
    """Contexts as the retriever looks them up within a line: from each token start of a line
    to each later token end, and from the line break before it."""
    pieces = set()
    for text in texts:
        for line in text.splitlines():
            tokens = [m.span() for m in WORD.finditer(line)][:8]
            for i, (a, _) in enumerate(tokens):
                for _, b in tokens[i:]:
                    pieces.add(line[a:b])
                    pieces.add("\n" + line[:b])
    return pieces


def test_lookups_find_exactly_what_a_rebuilt_index_finds(tmp_path: Path) -> None:
    """The same counts give the same features, hence the same calibrated confidences."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for i in range(6):
        (repo / f"m{i}.py").write_text(
            f"import os\nvalue_{i} = os.sep\n\ndef f_{i}(x):\n    return x + {i}\n"
        )
    index_repository(repo).save(tmp_path / "store" / INDEX_FILE)
    index = LiveIndex(repo, tmp_path / "store", LiveIndexConfig(quiet_s=0.05))
    index.load()
    index.start()
    try:
        (repo / "m0.py").write_text("import sys\nvalue_0 = sys.argv\n\ndef f_0(x):\n    return x\n")
        (repo / "m2.py").unlink()
        (repo / "m6.py").write_text("value_6 = os.sep\ndef g(x):\n    return x + 1\n")
        (repo / "m3.py").write_text("import os\n")
        for name in ("m0.py", "m2.py", "m6.py", "m3.py"):
            index.changed(name)
        wait_until(lambda: index.freshness().updated_files == 4, 10, "the four changes applied")
        rebuilt = index_repository(repo)
        pieces = single_line_pieces([*rebuilt.file_texts().values(), "value_2 = os.sep\n"])
        assert len(pieces) > 100
        for piece in sorted(pieces):
            assert index.continuations(piece, 10_000) == rebuilt.continuations(piece, 10_000), piece
        assert index.indexed_chars == rebuilt.indexed_chars
        assert index.indexed_places == rebuilt.indexed_places
        assert index.fingerprint() is not None
    finally:
        index.stop()


def test_a_one_line_edit_gets_a_short_fine_tune(
    repo_and_store: tuple[Path, Path], tmp_path: Path
) -> None:
    # A tiny corpus: a line is 0.5% of it, so the whole budget only for a whole new corpus.
    daemon = start(
        *repo_and_store, tmp_path, minutes=3.0, min_minutes=0.05, full_change=1.0, quiet_s=0.5
    )
    try:
        target = daemon.repo / "handlers_4.py"
        target.write_text(target.read_text().replace("return respond(value)", "return value", 1))
        wait_until(lambda: daemon.runner.runs == 1, 15, "the retrain after the edit")
        job = daemon.runner.job
        assert job is not None
        train = json.loads(job.command[job.command.index("--config") + 1])["train"]
        assert train["minutes"] == pytest.approx(0.05)  # not the 3-minute budget
        assert train["index"] is False  # the daemon keeps the index itself
        job.stop()
    finally:
        daemon.close()


def test_the_budget_follows_the_share_of_the_corpus_changed() -> None:
    config = TrainerConfig(minutes=5.0, full_change=0.05, min_minutes=0.25)
    assert config.minutes_for(60, 1_000_000) == 0.25  # one line
    assert config.minutes_for(25_000, 1_000_000) == pytest.approx(2.5)
    assert config.minutes_for(400_000, 1_000_000) == 5.0  # never past the budget
    assert config.minutes_for(0, 1_000_000) == 5.0  # unknown: the whole budget


def test_a_branch_switch_of_hundreds_of_files_gives_one_rebuild_and_one_retrain(
    repo_and_store: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, store = repo_and_store
    git(repo, "checkout", "-q", "-b", "other")
    for i in range(300):
        (repo / f"pkg_{i}.py").write_text(f"def okapi_{i}_route(request):\n    return {i}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "other")
    git(repo, "checkout", "-q", "-")
    daemon = start(repo, store, tmp_path, quiet_s=1.0)
    try:
        wait_until(lambda: daemon.index.freshness().pending_files == 0, 10, "the start-up check")
        assert daemon.index.freshness().rebuilds == 0
        git(repo, "checkout", "-q", "other")
        wait_until(lambda: daemon.runner.runs == 1, 30, "the retrain after the switch")
        wait_until(lambda: daemon.runner.state == "idle", 120, "the retrain to finish")
        wait_until(lambda: not daemon.index.freshness().rebuilding, 30, "the rebuild to finish")
        time.sleep(1.5)  # more quiet periods: nothing else starts
        fresh = daemon.index.freshness()
        assert (fresh.rebuilds, daemon.runner.runs) == (1, 1)
        assert (fresh.pending_files, fresh.updated_files) == (0, 0)
        assert "_route(request):" in offered(daemon, "def okapi_299")
    finally:
        daemon.close()
