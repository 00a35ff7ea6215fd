"""Index freshness: how soon a name saved in one file is offered in another, and at what CPU cost.

On a git repository of Python standard-library packages (code this project did not write) with a
small trained model: `completiond serve` runs, a function with a new name is appended to one
file and saved, and completions typed in another file (`x = zebra_7_qu`) are asked until the
rest of the name is offered. Measured for this tree ("after": the daemon updates its index on
every save) and for another git ref ("before", default `main`: the index changes only with a
retrain), each as a real daemon process:

- save -> offered: p50 and worst over the saves (20 after; fewer before, each waiting for a
  retrain, and without the retrain interval: `--watch-interval 0`);
- CPU seconds of the daemon per small save (its own and its children's, from /proc): after,
  the index update alone (saves without completions asked, 1.5 s apart) and, apart, the one
  fine-tune the saves lead to once the repository is quiet; before, everything from the save
  to the new index served (the retrain it needs).

Both daemons retrain with the same budget (`--retrain-minutes`, 1 by default; `serve`'s default
is 5, which a retrain before always spends and a small change after does not). The before
daemon runs the ref's code (PYTHONPATH); its training child, started isolated (`-I`, which
ignores PYTHONPATH), runs this tree's training code, which writes the index as the ref's does.

    .venv/bin/python bench/index_freshness.py                  # about 5 minutes
    .venv/bin/python bench/index_freshness.py --before-saves 1 --saves 10
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bpc import stdlib_corpus

from completiond.clients.client import Client

CLI = ["-m", "completiond.clients.cli"]
PACKAGES = ("asyncio", "email", "json", "collections")  # about 1 MB
SAVED = "json/encoder.py"  # where the new functions are saved
ASKED_IN = "email/utils.py"  # the file completions are asked in
HIDDEN = "64"
TICK = os.sysconf("SC_CLK_TCK")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b", *args],
        check=True,
        capture_output=True,
    )


def cpu_seconds(pid: int) -> float:
    """User + system time of the process and of its children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK


def tree_of(ref: str, dest: Path) -> Path:
    """This repository at `ref`, laid out as the installed package (for PYTHONPATH)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref], check=True, capture_output=True
    ).stdout
    src = dest / "src"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    # pyproject.toml's [tool.setuptools.package-dir] table: "package" = "folder" lines
    table = (src / "pyproject.toml").read_text().split("[tool.setuptools.package-dir]")[1]
    folders = dict(re.findall(r'^"([\w.]+)" = "([\w/]+)"$', table.split("\n[")[0], re.M))
    for package in sorted(folders, key=len):  # the root package first, then its subpackages
        shutil.copytree(src / folders[package], dest / "pkg" / package.replace(".", "/"))
    return dest / "pkg"


def function(k: int) -> str:
    body = "    return sorted(values)[int(q * len(values))]\n"
    return f"\n\ndef zebra_{k}_quantile(values, q):\n{body}"


def offered(client: Client, k: int) -> bool:
    prefix = f"import json\n\n\ndef probe(values):\n    x = zebra_{k}_qu"
    reply = client.complete(prefix, path=ASKED_IN, document_id="probe", n=5)
    return any(c.text.startswith("antile") for c in reply.candidates)


class Served:
    """`completiond serve` in a child process, from this tree or from `pythonpath`."""

    def __init__(self, repo: Path, store: Path, scratch: Path, args: list[str], path: str = ""):
        socket = scratch / "d.sock"
        env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
        self.process = subprocess.Popen(
            [sys.executable, *CLI, "serve", "--repo", str(repo), "--store", str(store),
             "--socket", str(socket), "--hidden-size", HIDDEN, *args],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.address = f"unix://{socket}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with Client(self.address, timeout_s=2) as client:
                    client.status()
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("the daemon did not start")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def status(self):  # type: ignore[no-untyped-def]
        with Client(self.address) as client:
            return client.status()

    def wait_idle(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            status = self.status()
            if status.training_state == "idle" and status.retrieval.index_pending_files == 0:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def save(repo: Path, k: int) -> float:
    with (repo / SAVED).open("a") as f:
        f.write(function(k))
    return time.monotonic()


def time_to_offer(daemon: Served, repo: Path, k: int, limit_s: float) -> float:
    with Client(daemon.address) as client:
        saved = save(repo, k)
        while time.monotonic() - saved < limit_s:
            if offered(client, k):
                return time.monotonic() - saved
            time.sleep(0.05)
    return float("inf")


def measure_after(daemon: Served, repo: Path, saves: int) -> dict[str, float]:
    daemon.wait_idle(120)
    latencies = []
    for k in range(saves):
        latencies.append(time_to_offer(daemon, repo, 100 + k, 30))
        time.sleep(1.0)
    quiet_saves = 10
    before = daemon.cpu()
    for k in range(quiet_saves):
        save(repo, 200 + k)
        time.sleep(1.5)
    index_cpu = (daemon.cpu() - before) / quiet_saves
    runs = daemon.status().last_training_result
    before = daemon.cpu()
    deadline = time.monotonic() + 300
    while daemon.status().last_training_result == runs and time.monotonic() < deadline:
        time.sleep(0.5)  # the debounced retrain: once the repository has been quiet
    daemon.wait_idle(300)
    return {
        "p50": statistics.median(latencies),
        "worst": max(latencies),
        "n": len(latencies),
        "index_cpu": index_cpu,
        "retrain_cpu": daemon.cpu() - before,
        "retrain": daemon.status().last_training_result,
    }


def measure_before(daemon: Served, repo: Path, saves: int) -> dict[str, float]:
    daemon.wait_idle(300)
    latencies, cpus = [], []
    for k in range(saves):
        before = daemon.cpu()
        latencies.append(time_to_offer(daemon, repo, 300 + k, 600))
        daemon.wait_idle(300)
        cpus.append(daemon.cpu() - before)
    return {
        "p50": statistics.median(latencies),
        "worst": max(latencies),
        "n": len(latencies),
        "cpu": statistics.mean(cpus),
        "retrain": daemon.status().last_training_result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=20, help="saves measured after (20)")
    parser.add_argument("--before-saves", type=int, default=2, help="saves measured before (2)")
    parser.add_argument("--before-ref", default="main", help="git ref of the before (main)")
    parser.add_argument("--retrain-minutes", type=float, default=1.0)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="completiond-freshness-"))
    try:
        corpus = stdlib_corpus(scratch / "corpus", PACKAGES)
        git(corpus, "init", "-q")
        git(corpus, "add", ".")
        git(corpus, "commit", "-q", "-m", "stdlib")
        store = scratch / "store"
        subprocess.run(
            [sys.executable, *CLI, "train", "--repo", str(corpus), "--store", str(store),
             "--minutes", "0.25", "--hidden-size", HIDDEN],
            check=True, capture_output=True,
        )  # fmt: skip
        size = sum(p.stat().st_size for p in corpus.rglob("*.py"))
        retrain = ["--retrain-minutes", str(args.retrain_minutes)]
        results = {}
        for name in ("after", "before"):
            repo, data = scratch / name, scratch / f"{name}-store"
            shutil.copytree(corpus, repo)
            shutil.copytree(store, data)
            if name == "after":
                daemon = Served(repo, data, scratch, retrain)
                try:
                    results[name] = measure_after(daemon, repo, args.saves)
                finally:
                    daemon.stop()
            else:
                path = str(tree_of(args.before_ref, scratch / "before-tree"))
                daemon = Served(repo, data, scratch, [*retrain, "--watch-interval", "0"], path)
                try:
                    results[name] = measure_before(daemon, repo, args.before_saves)
                finally:
                    daemon.stop()
        report(results, size, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(results: dict[str, dict[str, float]], size: int, args: argparse.Namespace) -> None:
    before, after = results["before"], results["after"]
    print(
        f"corpus: stdlib {', '.join(PACKAGES)} ({size:,} bytes, a git repository); a function "
        f"with a new name appended to {SAVED} per save, its name asked in {ASKED_IN}; "
        f"retrain budget {args.retrain_minutes:g} min, watcher quiet period 20 s (the defaults)\n"
    )
    print("| daemon | saves | save -> offered p50 | worst | daemon CPU s per small save |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| before ({args.before_ref}: index rebuilt by a retrain; no retrain interval) "
        f"| {before['n']:.0f} | {before['p50']:.1f} s | {before['worst']:.1f} s "
        f"| {before['cpu']:.1f} (each save: a retrain of the whole budget) |"
    )
    print(
        f"| after (index updated per save) | {after['n']:.0f} | {after['p50']:.2f} s "
        f"| {after['worst']:.2f} s | {after['index_cpu']:.3f} for the index; then one retrain "
        f"for all the saves, once quiet: {after['retrain_cpu']:.1f} |"
    )
    print(f"\nbefore, last retrain: {before['retrain']}")
    print(f"after, the retrain: {after['retrain']}")


if __name__ == "__main__":
    main()
