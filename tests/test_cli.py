"""The `completiond` command as a user runs it: real processes, a real daemon, a real socket."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from completiond.clients.lsp import build_parser as build_lsp_parser
from completiond.clients.parser import build_parser
from completiond.clients.render import status_rows
from completiond.core.bundle import ModelStore

from .conftest import TINY_MODEL, TlsFiles, make_repo

CLI = [sys.executable, "-m", "completiond.clients.cli"]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
        input=stdin,
    )


@dataclass
class Served:
    repo: Path
    log: Path
    env: dict[str, str]  # the daemon's XDG dirs: clients started with it find the daemon

    def cli(
        self, *args: str, cwd: Path | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd or self.repo, env=self.env, stdin=stdin)


def wait_for(stream_path: Path, text: str, proc: subprocess.Popen[str], limit_s: float) -> str:
    """Poll the daemon's log until `text` appears; bounded, and fails if the daemon exits."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        log = stream_path.read_text()
        if text in log:
            return log
        if proc.poll() is not None:
            pytest.fail(f"daemon exited with {proc.returncode}:\n{log}")
        time.sleep(0.2)
    pytest.fail(f"{text!r} not seen within {limit_s} s:\n{stream_path.read_text()}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`completiond serve` on a repository without a model: it trains one, then serves."""
    repo = make_repo(tmp_path_factory.mktemp("cli") / "app", files=4)
    (repo / "pkg").mkdir()
    log_path = repo.parent / "serve.log"
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(repo.parent / "cache"),
        "XDG_RUNTIME_DIR": str(repo.parent / "run"),
    }
    (repo.parent / "run").mkdir()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--repo", str(repo), "--minutes", "0.1", "--retrain-minutes", "0.05",
             "--hidden-size", str(TINY_MODEL["hidden_size"])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True,
        )  # fmt: skip
    try:
        wait_for(log_path, "serving model", proc, limit_s=120)
        yield Served(repo, log_path, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "stopped" in log_path.read_text()
    assert not list((repo.parent / "run").rglob("*.sock"))  # the socket is removed on exit


def test_serve_trains_a_first_model_with_progress(served: Served) -> None:
    log = served.log.read_text()
    assert "no model yet; training a quick first one" in log
    assert "improving it in the background" in log
    assert "% training" in log and "ETA" in log and "% done" in log


def test_complete_finds_the_daemon_from_inside_the_repository(
    served: Served,
) -> None:
    result = served.cli(
        "complete", "--path", "pkg/new.py", "    if value is N", cwd=served.repo / "pkg"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and "\n" not in result.stdout[:-1]
    assert result.stdout.strip()  # the tiny model has something to say here
    as_json = json.loads(served.cli("complete", "--json", "-n", "3", "    return ").stdout)
    assert 1 <= len(as_json["candidates"]) <= 3 and as_json["modelVersion"]
    assert all(0 <= c["confidence"] <= 1 for c in as_json["candidates"])


def test_complete_reads_the_prefix_from_stdin(served: Served) -> None:
    prefix = "def handler_7(request):\n    value = req"
    result = served.cli("complete", "-", stdin=prefix)
    assert result.returncode == 0, result.stderr
    assert result.stdout == served.cli("complete", prefix).stdout


def test_status_shows_the_model_and_the_daemon(served: Served) -> None:
    text = served.cli("status").stdout
    assert "parameters" in text and "bits/char" in text and "unix://" in text
    assert "retrieval   index of " in text and "the model runs when nothing is found" in text
    assert "and for a start below confidence 0.02" in text
    assert "typed through below confidence 0.35 comes back as its first word" in text
    assert "confidences: " in text
    assert "\nstarted     by hand; keeps running\n" in text
    assert "\nmodel base  none: trained from scratch\n" in text
    assert re.search(r"\nfile cache  (on \(weight 4\)|off): chosen by the training run, ", text)
    names = [line.split("  ")[0] for line in text.splitlines() if line and not line[0].isspace()]
    assert len(names) == len(set(names)), names  # one name, one fact
    assert re.search(r"\nindex +updated \d+ s ago; \d+ changed files pending; ", text), text
    status = json.loads(served.cli("status", "--json").stdout)
    assert status["trainingState"] in ("idle", "training")  # the background full model
    assert status["model"]["trainFiles"] >= 1


def test_bad_input_is_a_clear_message_not_a_traceback(served: Served) -> None:
    for args, message in [
        (["-n", "99", "x"], "n must be between 0 and 16"),
        (["--max-chars", "-1", "x"], "max_chars must be between 0 and 400"),
        (["--temperature", "-1", "x"], "temperature must be between 0 and 5"),
    ]:
        result = served.cli("complete", *args)
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr


def test_serving_process_never_loads_torch(served: Served) -> None:
    pid = json.loads(served.cli("status", "--json").stdout)["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "onnxruntime" in maps and "libtorch" not in maps


def test_complete_without_a_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    result = run_cli("complete", "x", cwd=tmp_path)
    assert result.returncode == 1
    assert "no daemon is running" in result.stderr and "completiond serve" in result.stderr


def test_status_without_a_daemon_reads_the_store(tmp_path: Path) -> None:
    result = run_cli("status", cwd=tmp_path)
    assert result.returncode == 0
    assert "not running" in result.stdout and "none yet" in result.stdout


def test_train_on_a_repository_without_code_explains_why(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\0\0binary")
    (tmp_path / ".env").write_text("TOKEN=abc\n")
    result = run_cli("train", "--repo", str(tmp_path), "--minutes", "0.05", cwd=tmp_path)
    assert result.returncode == 1
    assert "no trainable source files" in result.stderr and "Traceback" not in result.stderr
    assert "secret" in result.stderr


def test_serve_on_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    result = run_cli("serve", "--repo", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 1
    assert "is not a directory" in result.stderr and "Traceback" not in result.stderr


def test_train_in_the_foreground_then_serve_answers_at_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", files=3)
    result = run_cli(
        "train", "--repo", str(repo), "--minutes", "0.05", "--hidden-size", "32", cwd=repo
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("model ") and "bits/char" in result.stdout
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    assert status["model"]["version"] in result.stdout and status["listenAddress"] == ""


def test_a_tcp_daemon_with_tls_and_two_tokens_from_the_command_line(
    fixture_repo: Path, trained_store: ModelStore, tls_files: TlsFiles, tmp_path: Path
) -> None:
    refused = run_cli("serve", "--repo", str(fixture_repo), "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert refused.returncode == 1 and "needs a token (--token-file F)" in refused.stderr
    assert "Traceback" not in refused.stderr

    store = tmp_path / "store"  # a copy: the daemon writes its feedback counts there
    shutil.copytree(trained_store.root, store)
    token, completion = tmp_path / "keys" / "token", tmp_path / "keys" / "completion"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--repo", str(fixture_repo), "--store", str(store), "--no-watch",
             "--listen", "127.0.0.1:0", "--token-file", str(token),
             "--completion-token-file", str(completion),
             "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    try:
        served = wait_for(log_path, " on 127.0.0.1:", proc, limit_s=60)
        address = re.search(r" on (127\.0\.0\.1:\d+)", served).group(1)  # type: ignore[union-attr]
        assert f"wrote a new token to {token}; clients pass --token-file {token}" in served
        assert {token.stat().st_mode & 0o777, completion.stat().st_mode & 0o777} == {0o600}
        reach = ("--listen", address, "--tls-ca", str(tls_files.ca))
        done = run_cli("complete", "    if value is N", *reach, "--token-file", str(completion),
                       cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
        denied = run_cli("status", *reach, "--token-file", str(completion), cwd=tmp_path)
        assert denied.returncode == 1 and "permission_denied" in denied.stderr
        status = run_cli("status", "--json", *reach, "--token-file", str(token), cwd=tmp_path)
        assert json.loads(status.stdout)["listenAddress"] == address
        plain = run_cli("status", "--listen", address, "--token-file", str(token), cwd=tmp_path)
        assert plain.returncode == 1 and "unavailable" in plain.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_status_says_who_started_the_daemon_and_when_it_stops() -> None:
    status = {
        "repo": "/r", "store": "/s", "listenAddress": "unix:///d.sock", "pid": 7,
        "trainingState": "training", "requestsTotal": 0, "requestsFailed": 0,
        "startedBy": "lsp", "idleExitMinutes": 30.0, "stopsUnix": time.time() + 1800,
        "training": {"phase": "training", "fraction": 0.45, "etaSeconds": 12.0},
    }  # fmt: skip
    rows = dict(status_rows(status))
    assert rows["started"].startswith("by the editor bridge (completiond lsp); stops at ")
    assert rows["started"].endswith("unless a client calls before (after 30 min without one)")
    assert rows["training"].startswith("training (training 45%, about 12 s left); last run: ")


def test_every_command_has_accurate_help(tmp_path: Path) -> None:
    for command in ["serve", "train", "complete", "status", "retrain", "rollback", "eval"]:
        result = run_cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and f"usage: completiond {command}" in result.stdout


def commands_doc_section(heading: str) -> str:
    """One `## heading` section of docs/commands.md, the reference of every command."""
    text = (Path(__file__).parents[1] / "docs" / "commands.md").read_text()
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def undocumented(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The options of `parser` (short and long) that `text` does not name."""
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option not in ("-h", "--help", "--repo")
        and not re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text)
    ]


def test_the_docs_list_every_option_of_every_command() -> None:
    """Every command, the `lsp` bridge included, has a row in the commands table of
    docs/commands.md naming each of its `--help` options; `completiond`'s own options and
    `--repo`, which every command takes, are documented above the table."""
    table = commands_doc_section("The commands")
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `([a-z-]+)[^\n]*", table, re.MULTILINE)}
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {**commands.choices, "lsp": build_lsp_parser()}
    assert sorted(rows) == sorted(parsers)
    missing = {name: undocumented(parser, rows[name]) for name, parser in parsers.items()}
    assert missing == {name: [] for name in parsers}
    shared = commands_doc_section("Options every command takes")
    assert undocumented(build_parser(), shared) == [] and "`--repo DIR`" in shared


def test_eval_reports_quality_of_the_stored_model(
    fixture_repo: Path, trained_store: ModelStore, tmp_path: Path
) -> None:
    result = run_cli(
        "eval", "--repo", str(fixture_repo), "--store", str(trained_store.root),
        "--queries", "12", "--replay-lines", "3", "--json", "--report", str(tmp_path / "r"),
        "--start-below", "0.5", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "typed" in json.dumps(summary) and "exact_match" in json.dumps(summary)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "for its confident start when no candidate reaches 0.5" in report
    missing = run_cli(
        "eval", "--repo", str(fixture_repo), "--store", str(tmp_path / "none"), cwd=tmp_path
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
