"""Model bundles and the per-repository store that holds them. Torch-free: the daemon reads it.

A bundle is one directory: `model.onnx`, `tokenizer.json`, `meta.json` (config, corpus summary,
validation score, file hashes). Bundles are written under a temporary name and renamed into
place; the store's `current` file names the served bundle and is replaced atomically, so a
reader never sees a half-written model and a failed training run never touches what is served.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from completiond.errors import BundleError

from .tokenizer import CharTokenizer

FORMAT = 1
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
WEIGHTS_FILE = "weights.npz"  # PyTorch weights as plain arrays, for warm-started retraining
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)


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
        """An empty directory to write a bundle into before `publish`."""
        path = self.bundles_dir / f".tmp-{version}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def publish(self, staging: Path, meta: dict[str, Any], make_current: bool = True) -> Bundle:
        """Hash the staged files, write meta.json, rename into place and, unless the bundle is
        only kept aside, switch `current` to it."""
        meta = {**meta, "format": FORMAT}
        names = [*REQUIRED_FILES, *([WEIGHTS_FILE] if (staging / WEIGHTS_FILE).exists() else [])]
        meta["sha256"] = {name: sha256_file(staging / name) for name in names}
        write_durably(staging / META_FILE, json.dumps(meta, indent=2, sort_keys=True))
        final = self.bundles_dir / meta["version"]
        os.replace(staging, final)
        bundle = load_bundle(final)  # never point `current` at something that does not verify
        if make_current:
            self.set_current(bundle.version)
        self.prune()
        return bundle

    def set_current(self, version: str) -> None:
        write_durably(self.root / "current", version + "\n")

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


def write_durably(path: Path, text: str, mode: int = 0o666) -> None:
    """Write via a temporary file + fsync + rename, so the file is either old or new, never torn;
    the file is created with `mode` (less the umask), so a private one is never readable by
    others, not even for a moment. A failed write leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
