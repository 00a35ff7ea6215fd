"""Completion latency and throughput of a real daemon, driven over its Unix socket.

Trains (or reuses) a model on Python standard-library packages (code this project did not
write), starts `completiond serve` as its own process, and replays typing over held-out files
from client processes: every keystroke is a Complete request with the text before the cursor,
as an editor would send it. Prints one table with p50/p90/p99 per scenario and its ratio to the
same requests decoded in this process (no gRPC), the share of requests that ran the model and
the model-only time of those (each onnxruntime call timed), throughput under 1, 4 and 16
concurrent clients, resident memory, idle CPU and the time to the first answer. The store's
repository index is rebuilt from the training files only, so the typed files are new to it, as
a file being written is.

    .venv/bin/python bench/latency.py                   # trains 1 minute first (~4 minutes)
    .venv/bin/python bench/latency.py --store DIR       # reuse a store trained before
    .venv/bin/python bench/latency.py --model-below 2   # the model on every request
    .venv/bin/python bench/latency.py --hidden-size 512 --model-below 2   # a larger model's cost
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bpc import PACKAGES, stdlib_corpus  # bench/ is on the path when this script runs

from completiond.clients.client import Client
from completiond.completion.ranking import MODEL_BELOW
from completiond.completion.retrieval import RetrievalConfig, Retriever
from completiond.core.bundle import Bundle, ModelStore
from completiond.core.corpus import build_corpus
from completiond.core.index import INDEX_FILE, index_repository
from completiond.daemon.decoder import Decoder, DecoderConfig, Query
from completiond.daemon.engine import OnnxEngine, State
from completiond.daemon.state_cache import ContextConfig, DocumentStates

CLI = [sys.executable, "-m", "completiond.clients.cli"]
MAX_CHARS = 80
COLD_PREFIX = 4000


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ms = np.array(samples) * 1000
    return tuple(float(np.percentile(ms, q)) for q in (50, 90, 99))  # type: ignore[return-value]


def typing_sessions(texts: list[str], count: int, keys: int, seed: int) -> list[tuple[str, int]]:
    """(text, start) pairs: where a simulated user starts typing `keys` characters."""
    rng = random.Random(seed)
    usable = [t for t in texts if len(t) > 2500 + keys]
    return [
        (t, rng.randrange(2000, len(t) - keys)) for t in (rng.choice(usable) for _ in range(count))
    ]


def replay(args: tuple[str, list[tuple[str, int]], int, float, str]) -> tuple[list[float], int]:
    """One client process: type through its sessions (bounded by count and time)."""
    address, sessions, keys, seconds, name = args
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with Client(address, timeout_s=10) as client:
        for s, (text, start) in enumerate(sessions):
            document = f"{name}-{s}"
            client.complete(text[:start], document_id=document, max_chars=MAX_CHARS)  # opens it
            for pos in range(start + 1, start + keys):
                t0 = time.perf_counter()
                try:
                    client.complete(text[:pos], document_id=document, max_chars=MAX_CHARS)
                    latencies.append(time.perf_counter() - t0)
                except Exception:
                    errors += 1
                if time.monotonic() > deadline:
                    return latencies, errors
    return latencies, errors


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TimedEngine:
    """The real engine, timing every call: the model-only part of a request."""

    def __init__(self, inner: OnnxEngine) -> None:
        self.inner = inner
        self.vocab_size = inner.vocab_size
        self.seconds = 0.0

    def zero_state(self, batch: int) -> State:
        return self.inner.zero_state(batch)

    def run(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        t0 = time.perf_counter()
        out = self.inner.run(ids, state)
        self.seconds += time.perf_counter() - t0
        return out


class InProcess:
    """The daemon's decoder in this process: the same requests without gRPC, with model time."""

    def __init__(self, bundle: Bundle, retriever: Retriever, decoding: DecoderConfig) -> None:
        self.engine = TimedEngine(OnnxEngine(bundle.model_path, bundle.tokenizer.vocab_size))
        states = DocumentStates(self.engine, bundle.tokenizer, ContextConfig())
        self.decoder = Decoder(self.engine, bundle.tokenizer, states, decoding, retriever)
        self.model_times: list[float] = []

    def complete(self, prefix: str, document_id: str, max_chars: int) -> None:
        before = self.engine.seconds
        self.decoder.complete(Query(prefix=prefix, document=document_id, max_chars=max_chars))
        self.model_times.append(self.engine.seconds - before)

    def warm(self, text: str, document_id: str) -> None:
        self.decoder.states.warm(text, document_id)


def scenarios(backend: Client | InProcess, held_out: list[str], keys: int) -> list[list[float]]:
    """Latencies of: warm keystrokes, cold documents, first completions after Warm."""
    warm, cold, after = [], [], []
    for s, (text, start) in enumerate(typing_sessions(held_out, 8, keys, 1)):
        backend.complete(text[:start], document_id=f"w{s}", max_chars=MAX_CHARS)  # opens it
        for pos in range(start + 1, start + keys):  # one more character each time
            t0 = time.perf_counter()
            backend.complete(text[:pos], document_id=f"w{s}", max_chars=MAX_CHARS)
            warm.append(time.perf_counter() - t0)
    for s, (text, start) in enumerate(typing_sessions(held_out, 150, 1, 2)):
        prefix = text[max(0, start - COLD_PREFIX) : start]  # never seen; the daemon reads a tail
        t0 = time.perf_counter()
        backend.complete(prefix, document_id=f"cold{s}", max_chars=MAX_CHARS)
        cold.append(time.perf_counter() - t0)
    for s, (text, start) in enumerate(typing_sessions(held_out, 150, 1, 3)):
        backend.warm(text, document_id=f"open{s}")  # the editor opened it
        t0 = time.perf_counter()
        backend.complete(text[:start], document_id=f"open{s}", max_chars=MAX_CHARS)
        after.append(time.perf_counter() - t0)
    return [warm, cold, after]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="reuse this store instead of training")
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget if training")
    parser.add_argument(
        "--hidden-size", type=int, default=256, help="LSTM units of the model if training"
    )
    parser.add_argument("--keys", type=int, default=60, help="keystrokes per typing session")
    parser.add_argument("--seconds", type=float, default=15.0, help="per throughput run")
    parser.add_argument("--workers", type=int, default=0, help="daemon RPC threads (0: default)")
    parser.add_argument(
        "--model-below",
        type=float,
        default=MODEL_BELOW,
        help="as `serve --model-below`: the model runs below this retrieval confidence",
    )
    parser.add_argument("--no-retrieval", action="store_true", help="as `serve --no-retrieval`")
    args = parser.parse_args()
    retrieval = RetrievalConfig(enabled=not args.no_retrieval)
    decoding = DecoderConfig(model_below=args.model_below)

    scratch = Path(tempfile.mkdtemp(prefix="completiond-latency-"))
    repo = stdlib_corpus(scratch / "corpus", PACKAGES)
    store = args.store or scratch / "store"
    if args.store is None:
        subprocess.run(
            [*CLI, "train", "--repo", str(repo), "--store", str(store),
             "--minutes", str(args.minutes), "--hidden-size", str(args.hidden_size)],
            check=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    bundle = ModelStore(store).current()
    corpus = build_corpus(repo)
    held_out = [(repo / f).read_text() for f in corpus.val_files]
    for f in corpus.val_files:  # typed as new files: not in the repository the daemon indexes
        (repo / f).unlink()
    index = index_repository(repo)  # the training files: the typed ones are not in it
    index.save(store / INDEX_FILE)  # what the daemon loads

    socket = scratch / "d.sock"
    address = f"unix://{socket}"
    started = time.monotonic()
    daemon = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--repo",
            str(repo),
            "--store",
            str(store),
            "--socket",
            str(socket),
            "--no-watch",
            "--model-below",
            str(args.model_below),
        ]
        + (["--workers", str(args.workers)] if args.workers else [])
        + (["--no-retrieval"] if args.no_retrieval else []),
        stderr=subprocess.DEVNULL,
    )
    first_answer = None
    while first_answer is None and time.monotonic() - started < 30:
        try:
            with Client(address, timeout_s=5) as client:
                client.complete("import os\n")
            first_answer = time.monotonic() - started
        except Exception:
            time.sleep(0.02)
    try:
        with Client(address, timeout_s=10) as client:
            over_grpc = scenarios(client, held_out, args.keys)
        local = InProcess(bundle, Retriever(index, retrieval), decoding)
        in_process = scenarios(local, held_out, args.keys)
        # model-only times, in the order scenarios() made its requests (openings excluded)
        times, n_open = local.model_times, 8
        warm_n = len(in_process[0])
        keyed = [t for i, t in enumerate(times[: warm_n + n_open]) if i % args.keys != 0]
        model_only = [keyed, times[warm_n + n_open : warm_n + n_open + 150], times[-150:]]

        how = "off" if args.no_retrieval else f"the model runs below {args.model_below:g}"
        print(f"model {bundle.version}: {bundle.meta['model']}, int8 weights: "
              f"{bundle.meta.get('weights', {}).get('int8')}; retrieval: {how}\n")  # fmt: skip
        print("| scenario | n | p50 ms | p90 ms | p99 ms | in-process p50 ms | model ran "
              "| model-only p50 ms (when run) | p50 / in-process |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        names = ["warm keystroke", "cold document (4,000 chars)", "first completion after Warm"]
        for name, samples, local_samples, model in zip(
            names, over_grpc, in_process, model_only, strict=True
        ):
            p50, p90, p99 = percentiles(samples)
            ran = [t for t in model if t > 0]
            floor = f"{np.percentile(np.array(ran) * 1000, 50):.2f}" if ran else "-"
            local_p50 = percentiles(local_samples)[0]
            print(
                f"| {name} | {len(samples)} | {p50:.2f} | {p90:.2f} | {p99:.2f} | "
                f"{local_p50:.2f} | {100 * len(ran) / len(model):.0f}% | {floor} | "
                f"{p50 / local_p50:.1f}x |"
            )

        print("\n| concurrent clients | completions/s | p50 ms | p99 ms | errors | daemon CPU |")
        print("|---:|---:|---:|---:|---:|---:|")
        spawn = multiprocessing.get_context("spawn")  # grpc does not survive fork
        for clients in (1, 4, 16):
            work = [
                (address, typing_sessions(held_out, 20, args.keys, 10 + i), args.keys,
                 args.seconds, f"c{clients}-{i}")
                for i in range(clients)
            ]  # fmt: skip
            with spawn.Pool(clients) as pool:
                pool.map(time.sleep, [0.5] * clients)  # workers started before timing
                cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
                results = pool.map(replay, work)
                wall = time.monotonic() - t0
                cpu = (cpu_seconds(daemon.pid) - cpu0) / wall
            samples = [x for lat, _ in results for x in lat]
            errors = sum(e for _, e in results)
            p50, _, p99 = percentiles(samples)
            print(
                f"| {clients} | {len(samples) / wall:.0f} | {p50:.2f} | {p99:.2f} | {errors} "
                f"| {100 * cpu:.0f}% |"
            )

        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(5)
        idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / 5
        print(
            f"\ndaemon RSS {rss_mb(daemon.pid):.0f} MB after the runs; idle CPU "
            f"{100 * idle_cpu:.1f}% of a core over 5 s; first answer "
            f"{first_answer if first_answer is None else f'{first_answer:.2f} s'} after start"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
