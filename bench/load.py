"""Load with a retrain in the middle: 32 concurrent clients for 60 s against a real daemon.

Trains (or reuses) a model on Python standard-library packages, starts `completiond serve`, then
32 client processes replay typing over held-out files (bounded in time and count, Unix socket
only) while a retrain runs and its model is swapped in. Prints completions/s, p50/p99 latency,
errors (must be 0), the model versions that answered, and the daemon's memory before and after.

    .venv/bin/python bench/load.py                       # ~3 minutes
    .venv/bin/python bench/load.py --store DIR --clients 32 --seconds 60
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bpc import PACKAGES, stdlib_corpus
from latency import rss_mb, typing_sessions

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus

CLI = [sys.executable, "-m", "completiond.clients.cli"]


def client_loop(
    args: tuple[str, list[tuple[str, int]], float, str],
) -> tuple[list[float], int, set]:
    """One client: type until the time is up; latencies, errors, model versions seen."""
    address, sessions, seconds, name = args
    latencies: list[float] = []
    errors, versions = 0, set[str]()
    deadline = time.monotonic() + seconds
    with Client(address, timeout_s=10) as client:
        for s, (text, start) in enumerate(sessions):
            for pos in range(start, start + 200):
                if time.monotonic() > deadline:
                    return latencies, errors, versions
                t0 = time.perf_counter()
                try:
                    reply = client.complete(text[:pos], document_id=f"{name}-{s}", max_chars=80)
                    latencies.append(time.perf_counter() - t0)
                    versions.add(reply.model_version)
                except Exception:
                    errors += 1
    return latencies, errors, versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="reuse this store instead of training")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--retrain-minutes", type=float, default=0.5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="completiond-load-"))
    repo = stdlib_corpus(scratch / "corpus", PACKAGES)
    store = args.store or scratch / "store"
    if args.store is None:
        subprocess.run(
            [*CLI, "train", "--repo", str(repo), "--store", str(store), "--minutes", "1"],
            check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    before = ModelStore(store).current_version()
    held_out = [(repo / f).read_text() for f in build_corpus(repo).val_files]
    socket = scratch / "d.sock"
    address = f"unix://{socket}"
    daemon = subprocess.Popen(
        [*CLI, "serve", "--repo", str(repo), "--store", str(store), "--socket", str(socket),
         "--no-watch", "--retrain-minutes", str(args.retrain_minutes)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not socket.exists():
            time.sleep(0.1)
        with Client(address) as client:
            client.complete("import os\n")
        rss_start = rss_mb(daemon.pid)
        retrain: list[str] = []

        def retrain_midway() -> None:
            time.sleep(args.seconds / 4)
            with Client(address) as client:
                final = list(client.retrain(args.retrain_minutes))[-1]
            retrain.append(f"{final.phase}: {final.message}")

        trigger = threading.Thread(target=retrain_midway)
        trigger.start()
        work = [
            (address, typing_sessions(held_out, 30, 200, 100 + i), args.seconds, f"c{i}")
            for i in range(args.clients)
        ]
        spawn = multiprocessing.get_context("spawn")  # grpc does not survive fork
        with spawn.Pool(args.clients) as pool:
            t0 = time.monotonic()
            results = pool.map(client_loop, work)
            wall = time.monotonic() - t0
        trigger.join()
        rss_end = rss_mb(daemon.pid)
        latencies = np.array([x for lat, _, _ in results for x in lat]) * 1000
        errors = sum(e for _, e, _ in results)
        versions = set().union(*(v for _, _, v in results))
        print(
            f"{args.clients} clients for {args.seconds:g} s over the Unix socket; a "
            f"{args.retrain_minutes:g} min retrain started at {args.seconds / 4:g} s"
        )
        print(f"retrain: {retrain[0] if retrain else 'did not finish'}\n")
        print("| completions/s | p50 ms | p99 ms | errors | versions answering | RSS start MB "
              "| RSS end MB |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|")
        swapped = before in versions and len(versions) > 1
        print(
            f"| {len(latencies) / wall:.0f} | {np.percentile(latencies, 50):.2f} | "
            f"{np.percentile(latencies, 99):.2f} | {errors} | {len(versions)} "
            f"({'old and new' if swapped else ', '.join(sorted(versions))}) "
            f"| {rss_start:.0f} | {rss_end:.0f} |"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


if __name__ == "__main__":
    main()
