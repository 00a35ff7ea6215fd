"""Retraining as a user meets it: save a file, keep typing, get a better model.

On a ~1 MB corpus of Python standard-library packages with no model yet: starts `completiond
serve` and measures the time to its first answer (the quick first model), waits for the full
model trained after it in the background, measures completion latency while idle, then saves a
realistic edit (a new module from a package outside the corpus) and measures, from that save,
how long until the daemon answers with a new model, the completion latency while the retrain runs
(p50/p99 vs idle), and the validation score before and after on the same held-out files.

    .venv/bin/python bench/retrain.py                      # ~5 minutes
    .venv/bin/python bench/retrain.py --retrain-minutes 2
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bpc import stdlib_corpus
from latency import typing_sessions

from completiond.clients.client import Client
from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus

CLI = [sys.executable, "-m", "completiond.clients.cli"]
PACKAGES = ("asyncio", "email", "json", "collections")  # about 1 MB
EDIT = "textwrap.py"  # a module outside the corpus, saved into it as a new file


def type_continuously(address: str, texts: list[str], stop: threading.Event) -> list[float]:
    """One client typing through held-out text until `stop`; returns each request's latency."""
    latencies = []
    with Client(address, timeout_s=10) as client:
        for s, (text, start) in enumerate(typing_sessions(texts, 1000, 200, 5)):
            for pos in range(start, start + 200):
                if stop.is_set():
                    return latencies
                t0 = time.perf_counter()
                client.complete(text[:pos], document_id=f"t{s}", max_chars=80)
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.02)  # a fast typist: 50 keys per second
    return latencies


def measure(address: str, texts: list[str], seconds: float) -> list[float]:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return type_continuously(address, texts, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrain-minutes", type=float, default=1.0)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="completiond-retrain-"))
    repo = stdlib_corpus(scratch / "corpus", PACKAGES)
    store = scratch / "store"
    corpus = build_corpus(repo)
    texts = [(repo / f).read_text() for f in corpus.val_files]
    socket = scratch / "d.sock"
    address = f"unix://{socket}"
    daemon = subprocess.Popen(
        [*CLI, "serve", "--repo", str(repo), "--store", str(store), "--socket", str(socket),
         "--watch-quiet", "2", "--watch-interval", "0",
         "--retrain-minutes", str(args.retrain_minutes)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    try:
        while True:  # the quick first model
            try:
                with Client(address, timeout_s=5) as client:
                    client.complete("import os\n")
                break
            except Exception:
                time.sleep(0.2)
        first_answer = time.monotonic() - started
        with Client(address) as client:  # then the full model, trained after it
            while len((first := client.status()).versions) < 2 or first.training_state != "idle":
                time.sleep(0.5)
        idle = measure(address, texts, 20)
        stop = threading.Event()
        during: list[float] = []
        typist = threading.Thread(
            target=lambda: during.extend(type_continuously(address, texts, stop))
        )
        typist.start()
        saved = time.monotonic()
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / EDIT, repo / "json" / EDIT)
        with Client(address) as client:
            while (status := client.status()).last_training_result == first.last_training_result:
                time.sleep(0.1)
        answered = time.monotonic() - saved
        stop.set()
        typist.join()
        after = ModelStore(store)
        newest = after.bundles_dir / after.versions()[-1]
        meta = after.current().meta if status.model.version != first.model.version else None
        size = (repo / "json" / EDIT).stat().st_size
        print(
            f"corpus: stdlib {', '.join(PACKAGES)}: {len(corpus.train_text):,} training chars; "
            f"edit: saved {EDIT} ({size:,} bytes) as a new file"
        )
        print(
            f"fresh repository: first answer {first_answer:.1f} s after `serve` started (quick "
            f"model), then a {args.retrain_minutes:g} min background model; retrains: "
            f"{args.retrain_minutes:g} min, 1 thread, niced; watcher quiet period 2 s\n"
        )
        print(f"save -> new model answering: {answered:.1f} s "
              f"({status.last_training_result or 'still training'})")  # fmt: skip
        if meta:
            prev = meta["previous"]["val_bpc"]
            print(f"validation bits/char on the same held-out files: {prev:.3f} -> "
                  f"{meta['val_bpc']:.3f} ({meta['val_bpc'] - prev:+.3f}; warm start from "
                  f"{meta['warm_start_from']})")  # fmt: skip
        else:
            print(f"new model kept aside or failed: {newest.name}")
        print("\n| completions | n | p50 ms | p99 ms |\n|---|---:|---:|---:|")
        for name, samples in (("idle", idle), ("while retraining", during)):
            ms = np.array(samples) * 1000
            print(f"| {name} | {len(ms)} | {np.percentile(ms, 50):.2f} | "
                  f"{np.percentile(ms, 99):.2f} |")  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
