"""The reference peers as systems of bench/quality.py, run strictly through their protocol.

The peers (`ngram_cache.py`, `seed_lstm.py`; see the README beside them, by default in
../shared/reference-peers from the repository root) are stand-alone programs: `train` on a list
of files for a budget of minutes, then `complete` a batch of queries from a JSONL file. Each runs
with this interpreter (it has torch and numpy), BENCH_THREADS set to the product's training
threads.

A peer answers in batches, while `evaluate` asks one query at a time and its keystroke replay
asks where earlier answers took it. So `evaluate` runs in rounds: a round answers "" to every
query it has no answer for and records it; one `complete` call then answers all recorded
queries; the next round asks again, until a round records nothing new (MAX_ROUNDS at most: the
queries still unanswered then count as no answer, and the report's notes say so). The latency
`evaluate` reads for a peer is the peer's own time per query (P.jsonl's `ms`, its model loading
excluded), through a clock that only the peer's answers advance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from completiond.core.corpus import read_texts
from completiond.daemon.decoder import Candidate, Query
from completiond.evaluation.evaluate import EvalConfig, EvalReport, evaluate

PEERS = {"ref-ngram": "ngram_cache.py", "ref-lstm": "seed_lstm.py"}
MAX_ROUNDS = 20


def default_peers_dir() -> Path:
    """../shared/reference-peers from the repository root."""
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "reference-peers").resolve()


def missing_peers(directory: Path, names: set[str]) -> list[str]:
    """The files of the peers `names` (and their README) that `directory` lacks."""
    wanted = ["README.md", *(PEERS[n] for n in sorted(names & set(PEERS)))]
    return [f for f in wanted if not (directory / f).is_file()]


@dataclass
class Peer:
    """One peer program with its own scratch directory (`work`); the model lives in work/model."""

    name: str
    script: Path
    work: Path
    threads: int

    def _run(self, *args: str, timeout: float | None = None) -> str:
        """The peer's stderr; a failure stops the run with the peer's own last words."""
        env = {**os.environ, "BENCH_THREADS": str(self.threads)}
        command = [sys.executable, str(self.script), *args]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout, check=True
            )
        except subprocess.CalledProcessError as exc:
            why = " / ".join((exc.stderr or exc.stdout or "").strip().splitlines()[-3:])
            raise SystemExit(f"{self.name}: {' '.join(command)} failed: {exc}: {why}") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise SystemExit(f"{self.name}: {' '.join(command)} failed: {exc}") from exc
        return done.stderr

    def train(self, repo: Path, files: list[str], minutes: float) -> str:
        """`train` on the absolute paths of `files`; the last line the peer logged."""
        self.work.mkdir(parents=True, exist_ok=True)
        listing = self.work / "train.txt"
        listing.write_text("".join(f"{(repo / rel).resolve()}\n" for rel in files))
        model = str(self.work / "model")
        log = self._run(
            "train",
            *("--train-list", str(listing), "--minutes", f"{minutes:g}", "--workdir", model),
            timeout=2 * minutes * 60 + 300,
        )
        lines = log.strip().splitlines()
        return lines[-1] if lines else ""

    def complete(self, queries: list[dict[str, str]]) -> dict[str, tuple[str, float]]:
        """`complete` on one batch: (completion, the peer's ms) by query id."""
        asked, answers = self.work / "queries.jsonl", self.work / "answers.jsonl"
        with asked.open("w", encoding="utf-8") as out:
            for query in queries:
                out.write(json.dumps(query, ensure_ascii=False) + "\n")
        model = str(self.work / "model")
        self._run("complete", "--workdir", model, "--queries", str(asked), "--out", str(answers))
        got = {}
        with answers.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    row = json.loads(line)
                    got[row["id"]] = (str(row["completion"]), float(row["ms"]))
        missing = {q["id"] for q in queries} - set(got)
        if missing:
            raise SystemExit(f"{self.name}: no answer for {len(missing)} of {len(queries)} queries")
        return got


@dataclass
class Batched:
    """A peer as evaluate's one-at-a-time `complete`: known answers, and the queries asked that
    have none yet (answered "" meanwhile)."""

    peer: Peer
    repo: Path
    texts: dict[str, str]  # the held-out files: a query's `path` is the file it was cut from
    answers: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    asked: dict[tuple[str, str], str] = field(default_factory=dict)  # (prefix, suffix): path
    now: float = 0.0  # the clock evaluate reads: seconds of the peer's own time so far
    batches: int = 0
    queries: int = 0

    def clock(self) -> float:
        return self.now

    def complete(self, query: Query) -> list[Candidate]:
        key = (query.prefix, query.suffix)
        answer = self.answers.get(key)
        if answer is None:
            if key not in self.asked:
                self.asked[key] = self._path(query)
            return []
        text, ms = answer
        self.now += ms / 1000
        text = text.split("\n", 1)[0]  # only the text up to the first newline counts
        # A peer has no confidence: every answer counts as shown.
        return [Candidate(text, 1.0)] if text else []

    def _path(self, query: Query) -> str:
        """The absolute path of the held-out file the query was cut from."""
        for rel, text in self.texts.items():
            if text.startswith(query.prefix) and text.endswith(query.suffix):
                return str((self.repo / rel).resolve())
        raise ValueError("a query cut from no held-out file")

    def answer_asked(self) -> None:
        """One batch for every query asked since the last one."""
        keys = list(self.asked)
        ids = [f"q{self.queries + i}" for i in range(len(keys))]
        batch = [
            {"id": i, "path": self.asked[k], "prefix": k[0], "suffix": k[1]}
            for i, k in zip(ids, keys, strict=True)
        ]
        got = self.peer.complete(batch)
        for i, key in zip(ids, keys, strict=True):
            self.answers[key] = got[i]
        self.asked.clear()
        self.batches += 1
        self.queries += len(keys)


def evaluate_peer(
    peer: Peer, repo: Path, files: list[str], config: EvalConfig, system: str
) -> EvalReport:
    """`evaluate` in rounds until the peer has answered every query asked (see the module's
    docstring); the rounds are in the report's notes."""
    batched = Batched(peer, repo, read_texts(repo, files))
    start = time.monotonic()
    while True:
        report = evaluate(batched.complete, repo, files, config, system, clock=batched.clock)
        if not batched.asked or batched.batches == MAX_ROUNDS:
            break
        batched.answer_asked()
    note = (
        f"{batched.queries} queries in {batched.batches} batches, "
        f"{time.monotonic() - start:.0f} s; p50 is the peer's own time per query"
    )
    if batched.asked:
        note += f"; ROUND LIMIT ({MAX_ROUNDS}) HIT: {len(batched.asked)} queries left unanswered"
    report.notes.append(note)
    return report
