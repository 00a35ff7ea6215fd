"""Model bundles and the per-repository store that holds them. Torch-free: the daemon reads it.

A bundle is one directory: `model.onnx`, `tokenizer.json`, `meta.json` (config, corpus summary,
validation score, file hashes). Bundles are written under a temporary name and renamed into
place; the store's `current` file names the served bundle and is replaced atomically, so a
reader never sees a half-written model and a failed training run never touches what is served.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durable import (
    DIR_MODE,
    FILE_MODE,
    private_dir,
    seal_dir,
    sync_dir,
    write_text_atomically,
)
from .errors import BundleError, TrainingBusy
from .tokenizer import CharTokenizer

FORMAT = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
WEIGHTS_FILE = "weights.npz"  # PyTorch weights as plain arrays, for warm-started retraining
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
LOCK_FILE = "train.lock"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version() -> str:
    """Sortable by creation time, unique across concurrent writers."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    directory: Path
    meta: dict[str, Any]
    tokenizer: CharTokenizer

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE


def load_bundle(directory: Path) -> Bundle:
    """Read and verify a bundle: every file present, hashes as recorded, tokenizer consistent."""
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory} does not exist")
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"model bundle {directory}: unreadable {META_FILE}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"model bundle {directory}: unknown format (expected {FORMAT})")
    hashes = meta.get("sha256", {})
    for name in sorted({*REQUIRED_FILES, *hashes}):
        path = directory / name
        if not path.is_file():
            raise BundleError(f"model bundle {directory}: {name} is missing")
        if sha256_file(path) != hashes.get(name):
            raise BundleError(f"model bundle {directory}: {name} does not match its hash")
    try:
        tokenizer = CharTokenizer.from_json((directory / TOKENIZER_FILE).read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"model bundle {directory}: bad tokenizer: {exc}") from exc
    if tokenizer.vocab_size != meta.get("model", {}).get("vocab_size"):
        raise BundleError(f"model bundle {directory}: tokenizer and model disagree on vocabulary")
    return Bundle(directory, meta, tokenizer)


class ModelStore:
    """The bundles of one repository: `<root>/bundles/<version>/` plus the `current` pointer."""

    def __init__(self, root: Path, keep: int = 5) -> None:
        self.root = root
        self.keep = keep  # bundles kept for rollback, the current one always among them

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    def current_version(self) -> str | None:
        try:
            version = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def current(self) -> Bundle:
        """The verified current bundle; BundleError when there is none or it does not verify."""
        version = self.current_version()
        if version is None:
            raise BundleError(f"no model in {self.root} yet")
        return load_bundle(self.bundles_dir / version)

    def versions(self) -> list[str]:
        if not self.bundles_dir.is_dir():
            return []
        return sorted(p.name for p in self.bundles_dir.iterdir() if not p.name.startswith("."))

    def staging_dir(self, version: str) -> Path:
        """An empty private directory to write a bundle into before `publish`."""
        private_dir(self.bundles_dir)
        path = self.bundles_dir / f".tmp-{version}"
        path.mkdir(mode=DIR_MODE)
        return path

    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held by the one training run that may write this store: a foreground `train` and a
        daemon's retrain (or two daemons) cannot both publish and let a worse model replace a
        better one. TrainingBusy when another process holds it; released when it exits."""
        private_dir(self.root)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise TrainingBusy(
                    f"another training run is writing the model store {self.root}; "
                    "wait for it to finish (completiond status shows the daemon's)"
                ) from exc
            yield
        finally:
            os.close(fd)  # releases the lock

    def publish(self, staging: Path, meta: dict[str, Any], make_current: bool = True) -> Bundle:
        """Hash the staged files, write meta.json, rename into place and, unless the bundle is
        only kept aside, switch `current` to it."""
        meta = {**meta, "format": FORMAT}
        names = [*REQUIRED_FILES, *([WEIGHTS_FILE] if (staging / WEIGHTS_FILE).exists() else [])]
        meta["sha256"] = {name: sha256_file(staging / name) for name in names}
        write_text_atomically(staging / META_FILE, json.dumps(meta, indent=2, sort_keys=True))
        seal_dir(staging)
        final = self.bundles_dir / meta["version"]
        os.replace(staging, final)
        sync_dir(self.bundles_dir)
        bundle = load_bundle(final)  # never point `current` at something that does not verify
        if make_current:
            self.set_current(bundle.version)
        self.prune()
        return bundle

    def set_current(self, version: str) -> None:
        write_text_atomically(self.root / "current", version + "\n")

    def prune(self) -> None:
        """Drop the oldest bundles beyond `keep` and stale staging directories."""
        current = self.current_version()
        old = [v for v in self.versions() if v != current][
            : max(0, len(self.versions()) - self.keep)
        ]
        for version in old:
            shutil.rmtree(self.bundles_dir / version, ignore_errors=True)
        for stale in self.bundles_dir.glob(".tmp-*"):
            if time.time() - stale.stat().st_mtime > 24 * 3600:
                shutil.rmtree(stale, ignore_errors=True)
