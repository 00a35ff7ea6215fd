"""Well-behaved clients next to hostile ones: does every limit hold, and what does an attack cost?

Trains a tiny model on Python standard-library packages plus a file full of control characters
(ESC, CR, BEL, NEL, U+2028, bidi overrides), starts `completiond serve` on a Unix socket, and
runs three phases: well-behaved clients alone (typists: an editor's requests at 50 keys per
second through held-out files, each keystroke timed), then the same typists while hostile
clients loop without pause over every bound a client can push on, then the typists alone again.
The hostile requests: a 1,000,000-character prefix, one over the limit and a 5 MB message;
document ids and paths over 4,096 characters, and new 4,096-character ids; one document
completed near the top then near the bottom of a 200,000-character file (sampled: no retrieval
answers, so the model reads every time); feedback under new junk client names and names with
control characters; new documents and Warms without end (to blow the state cache); completions
inside the control-character file; a 200,000-character Warm given up after 5 ms. Every loop is
bounded in count and time; only the Unix socket is used.

Prints the typists' latency per phase, the daemon's resident memory over time, each attack's
outcomes, and checks: no suggestion with a control character, at most 64 feedback clients.

    .venv/bin/python bench/hostile.py                   # about 2 minutes
    .venv/bin/python bench/hostile.py --seconds 40 --hostile 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.pool
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from bpc import stdlib_corpus  # bench/ is on the path when this script runs
from latency import rss_mb, typing_sessions

from completiond.clients.client import Client
from completiond.completion.retrieval import UNSHOWABLE
from completiond.core.bundle import ModelStore
from completiond.core.corpus import build_corpus
from completiond.daemon.feedback import MAX_CLIENTS
from completiond.training.model import ModelConfig
from completiond.training.run import train_repository
from completiond.training.train import TrainConfig
from completiond.v1 import completion_pb2 as pb

CLI = [sys.executable, "-m", "completiond.clients.cli"]
PACKAGES = ("json", "email", "collections")
KEYS = 200  # keystrokes per typing session
PAUSE_S = 0.02  # between a typist's keystrokes: 50 keys per second
MAX_REQUESTS = 100_000  # per hostile client, whatever the time
BIG_CHARS = 200_000
# Sampling: no retrieval, so the model reads the prefix whatever the repository holds.
MODEL_READS = {"temperature": 0.5, "max_chars": 8}
# A file of the repository with characters no suggestion may show, after starts it repeats.
PAINT = (
    'def paint_{i}(name):\n    label = "red\x1b[0m" + name\n    bar = "50%\r100%"\n'
    '    bell = "ding\x07\x85"\n    lines = "one\u2028two"\n'
    '    user = "admin\u202e\u2066 # check\u2069"\n    return label\n\n\n'
)


def typist(args: tuple[str, list[str], float, int, str]) -> tuple[list[float], int]:
    """A well-behaved client: types through held-out files; latencies of keystrokes, errors."""
    address, texts, seconds, seed, name = args
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with Client(address, timeout_s=10) as client:
        for s, (text, start) in enumerate(typing_sessions(texts, 100, KEYS, seed)):
            document = f"file:///{name}/{s}.py"
            client.complete(text[:start], document_id=document, max_chars=80)  # opens it
            for pos in range(start + 1, start + KEYS):
                if time.monotonic() > deadline:
                    return latencies, errors
                t0 = time.perf_counter()
                try:
                    client.complete(text[:pos], document_id=document, max_chars=80)
                    latencies.append(time.perf_counter() - t0)
                except grpc.RpcError:
                    errors += 1
                time.sleep(PAUSE_S)
    return latencies, errors


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unsafe: int = 0  # suggestions holding a character UNSHOWABLE forbids


@dataclass
class Hostile:
    """One hostile client: each method sends one request and returns its candidates' texts."""

    client: Client
    big: str  # 200,000 characters of code
    paint: str  # the control-character file
    rng: random.Random
    name: str
    n: int = 0  # requests sent so far (unique ids and names)

    def huge_prefix(self) -> list[str]:
        size = self.rng.choice([1_000_000, 1_000_001, 5_000_000])  # ok, refused, over transport
        prefix = (self.big * (size // len(self.big) + 1))[self.n % 1000 :][:size]
        return texts(self.client.complete(prefix, max_chars=80))

    def long_keys(self) -> list[str]:
        key = {"document_id": f"{self.name}-{self.n}-".ljust(self.rng.choice([4_096, 5_000]), "k")}
        if self.n % 3 == 0:
            key = {"path": "p" * 5_000}
        return texts(self.client.complete(self.big[:3_000], **key))  # type: ignore[arg-type]

    def catch_up(self) -> list[str]:
        end = 1_000 if self.n % 2 else BIG_CHARS - 1_000
        prefix = self.big[: end + self.rng.randrange(100)]
        document = f"{self.name}-big"
        return texts(self.client.complete(prefix, document_id=document, **MODEL_READS))

    def junk_feedback(self) -> list[str]:
        name = f"junk{self.name}{self.n}" if self.n % 4 else f"\x1b]0;{self.n}\x07"
        self.client.feedback(name, "shown", 1000)
        return []

    def many_documents(self) -> list[str]:
        document = f"{self.name}-doc-{self.n}-".ljust(4_096, "d")
        at = self.rng.randrange(BIG_CHARS - 20_000)
        if self.n % 2:
            self.client.warm(self.big[at : at + 16_384], document_id=document)
            return []
        prefix = self.big[at : at + 2_000]
        return texts(self.client.complete(prefix, document_id=document, **MODEL_READS))

    def control_chars(self) -> list[str]:
        cut = self.rng.randrange(200, len(self.paint))
        temperature = 0.0 if self.n % 2 else 0.8  # retrieval and the model, or the model alone
        reply = self.client.complete(
            self.paint[:cut], suffix=self.paint[cut:], n=4, temperature=temperature
        )
        return texts(reply)

    def give_up(self) -> list[str]:
        at = self.rng.randrange(BIG_CHARS // 2)
        request = pb.WarmRequest(document_id=f"{self.name}-warm-{self.n}", text=self.big[at:])
        self.client.completion.Warm(request, timeout=0.005)
        return []


ATTACKS: list[Callable[[Hostile], list[str]]] = [
    Hostile.huge_prefix,
    Hostile.long_keys,
    Hostile.catch_up,
    Hostile.junk_feedback,
    Hostile.many_documents,
    Hostile.control_chars,
    Hostile.give_up,
]


def texts(reply: pb.CompleteResponse) -> list[str]:
    return [c.text for c in reply.candidates]


def hostile(args: tuple[str, str, str, float, int]) -> dict[str, Tally]:
    """A hostile client: every attack in turn, no pause, bounded by count and time."""
    address, big, paint, seconds, seed = args
    tallies = {attack.__name__: Tally() for attack in ATTACKS}
    deadline = time.monotonic() + seconds
    with Client(address, timeout_s=30) as client:
        attacker = Hostile(client, big, paint, random.Random(seed), f"h{seed}")
        while time.monotonic() < deadline and attacker.n < MAX_REQUESTS:
            attack = ATTACKS[attacker.n % len(ATTACKS)]
            tally = tallies[attack.__name__]
            t0 = time.perf_counter()
            try:
                shown = attack(attacker)
                tally.codes["OK"] += 1
                tally.unsafe += sum(1 for text in shown if UNSHOWABLE.search(text))
            except grpc.RpcError as exc:
                tally.codes[exc.code().name] += 1
            tally.latencies.append(time.perf_counter() - t0)
            attacker.n += 1
    return tallies


def make_repo(scratch: Path) -> tuple[Path, list[str], str, str]:
    """Standard-library packages and the control-character file; held-out texts, 200,000
    characters of the training files (what the catch-up attack types through), that file."""
    repo = stdlib_corpus(scratch / "repo", PACKAGES)
    paint = "".join(PAINT.format(i=i) for i in range(60))
    (repo / "paint.py").write_text(paint)
    corpus = build_corpus(repo)
    held_out = [(repo / f).read_text() for f in corpus.val_files]
    big = "".join((repo / f).read_text() for f in corpus.train_files if f != "paint.py")
    return repo, held_out, (big * (BIG_CHARS // len(big) + 1))[:BIG_CHARS], paint


def percentile_row(name: str, latencies: list[float], errors: int) -> str:
    ms = np.array(latencies) * 1000
    return (
        f"| {name} | {len(ms)} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | "
        f"{ms.max():.1f} | {errors} |"
    )


class Sampler:
    """The daemon's resident memory every half second, labelled with the phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phase = "start"
        self.samples: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic() - self._t0, self.phase, rss_mb(self.pid)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_phase(
    pool: multiprocessing.pool.Pool,
    address: str,
    held_out: list[str],
    seconds: float,
    typists: int,
    attack: tuple[str, str, int] | None,
) -> tuple[list[float], int, dict[str, Tally]]:
    """Typists for `seconds`, with hostile clients alongside when `attack` (big, paint, count)."""
    work = [(address, held_out, seconds, 100 + i, f"t{i}") for i in range(typists)]
    typing = pool.map_async(typist, work)
    attacks = (
        pool.map_async(
            hostile, [(address, attack[0], attack[1], seconds, s) for s in range(attack[2])]
        )
        if attack
        else None
    )
    results = typing.get()
    tallies: dict[str, Tally] = {}
    for per_client in attacks.get() if attacks else []:
        for name, tally in per_client.items():
            total = tallies.setdefault(name, Tally())
            total.codes.update(tally.codes)
            total.latencies += tally.latencies
            total.unsafe += tally.unsafe
    latencies = [x for lat, _ in results for x in lat]
    return latencies, sum(e for _, e in results), tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="per phase (default: 25)")
    parser.add_argument("--typists", type=int, default=2, help="well-behaved clients")
    parser.add_argument("--hostile", type=int, default=2, help="hostile clients")
    parser.add_argument("--train-minutes", type=float, default=0.25)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="completiond-hostile-"))
    repo, held_out, big, paint = make_repo(scratch)
    store = ModelStore(scratch / "store")
    train_repository(
        repo,
        store,
        ModelConfig(hidden_size=64, embed_dim=16),
        TrainConfig(minutes=args.train_minutes, threads=1, eval_interval_s=5),
    )
    socket = scratch / "d.sock"
    address = f"unix://{socket}"
    daemon = subprocess.Popen(
        [*CLI, "serve", "--repo", str(repo), "--store", str(store.root), "--socket", str(socket),
         "--no-watch"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not socket.exists():
            time.sleep(0.1)
        with Client(address) as client:
            client.complete("import os\n")
        sampler = Sampler(daemon.pid)
        spawn = multiprocessing.get_context("spawn")  # grpc does not survive fork
        rows, tallies = [], {}
        with spawn.Pool(args.typists + args.hostile) as pool:
            for phase, attack, seconds in [
                ("alone", None, args.seconds),
                ("under attack", (big, paint, args.hostile), args.seconds),
                ("alone again", None, args.seconds / 2),
            ]:
                sampler.phase = phase
                latencies, errors, found = run_phase(
                    pool, address, held_out, seconds, args.typists, attack
                )
                rows.append(percentile_row(phase, latencies, errors))
                tallies = found or tallies
        sampler.stop()
        with Client(address) as client:
            status = client.status()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    report(args, rows, sampler, tallies, status)


def report(
    args: argparse.Namespace,
    rows: list[str],
    sampler: Sampler,
    tallies: dict[str, Tally],
    status: pb.StatusResponse,
) -> None:
    print(
        f"{args.typists} typists (50 keys/s, held-out stdlib files, tiny model); "
        f"{args.hostile} hostile clients without pause in the middle phase; Unix socket\n"
    )
    print("| phase | typist keystrokes | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\n| phase | daemon RSS MB: first | max | last |")
    print("|---|---:|---:|---:|")
    for phase in dict.fromkeys(p for _, p, _ in sampler.samples):
        rss = [r for _, p, r in sampler.samples if p == phase]
        print(f"| {phase} | {rss[0]:.0f} | {max(rss):.0f} | {rss[-1]:.0f} |")
    timeline = sampler.samples[:: max(1, len(sampler.samples) // 16)]  # a line of 16 or so
    print("\n| t s | " + " | ".join(f"{t:.0f}" for t, _, _ in timeline) + " |")
    print("|---|" + "---:|" * len(timeline))
    print("| RSS MB | " + " | ".join(f"{r:.0f}" for _, _, r in timeline) + " |")
    print("\n| attack | requests | outcomes | p50 ms | p99 ms | max ms |")
    print("|---|---:|---|---:|---:|---:|")
    for name, tally in tallies.items():
        ms = np.array(tally.latencies) * 1000
        outcomes = ", ".join(f"{code} {n}" for code, n in tally.codes.most_common())
        print(
            f"| {name} | {len(ms)} | {outcomes} | {np.percentile(ms, 50):.1f} | "
            f"{np.percentile(ms, 99):.1f} | {ms.max():.1f} |"
        )
    unsafe = sum(t.unsafe for t in tallies.values())
    print(
        f"\nsuggestions with a control character: {unsafe}; feedback clients kept: "
        f"{len(status.feedback)} (at most {MAX_CLIENTS}); daemon requests: "
        f"{status.requests_total} ({status.requests_failed} failed, refusals included)"
    )


if __name__ == "__main__":
    main()
