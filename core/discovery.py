"""Code already on the machine that a base model can learn from, and the bases built from it.

A base is a language's LSTM pretrained on code the user already has (the interpreter's standard
library and installed packages, the system headers, globally installed npm packages), stored in
the user's cache; a repository's first model starts from it. Discovery reads nothing from the
network and never the repository being served. Torch-free: `status` lists the bases.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bundle import sha256_file
from .corpus import masked_text
from .durable import FILE_MODE, private_dir
from .errors import TrainingBusy
from .files import FileSelectionConfig, read_source, select_files

# The languages a base is built for, by the extensions of their files. C and C++ share one
# base (the system headers mix them), as do JavaScript and TypeScript.
LANGUAGES: dict[str, frozenset[str]] = {
    "python": frozenset({"py", "pyi"}),
    "c": frozenset({"c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx"}),
    "javascript": frozenset({"js", "jsx", "mjs", "cjs", "ts", "tsx"}),
}
BASE_META = "base.json"  # written last: a base is complete when it exists and its hashes match
BASE_TOKENIZER = "tokenizer.json"
BASE_WEIGHTS = "weights.npz"
BASE_MANIFEST = "manifest.json"  # the content hash of every file the base learned from


def bases_dir() -> Path:
    """`$XDG_CACHE_HOME/completiond/bases` (or ~/.cache): one directory per language."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "completiond" / "bases"


def base_lock_path(directory: Path) -> Path:
    """`bases/<language>.lock` beside the base's directory `bases/<language>`."""
    return directory.with_name(directory.name + ".lock")


@contextmanager
def base_lock(directory: Path) -> Iterator[None]:
    """Held by the one process building the base in `directory` (`completiond pretrain`, run
    by hand or by an idle daemon): two builders would train the same checkpoint twice and write
    over each other's. TrainingBusy when another process holds it; released when it exits."""
    private_dir(directory.parent)
    fd = os.open(base_lock_path(directory), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise TrainingBusy(
                f"another process is building the base in {directory}; wait for it to finish"
            ) from exc
        yield
    finally:
        os.close(fd)  # releases the lock


def base_being_built(directory: Path) -> bool:
    """Whether another process holds the base's lock now."""
    try:
        with base_lock(directory):
            return False
    except TrainingBusy:
        return True


def selection_for(language: str) -> FileSelectionConfig:
    """The repository's file rules, restricted to one language's extensions."""
    return FileSelectionConfig(extensions=LANGUAGES[language], names=frozenset())


def language_of(paths: Iterable[str]) -> str | None:
    """The language most of a repository's files are written in, of those a base exists for."""
    counts: Counter[str] = Counter()
    for path in paths:
        suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        counts.update(lang for lang, exts in LANGUAGES.items() if suffix in exts)
    return counts.most_common(1)[0][0] if counts else None


def _python_roots() -> list[str]:
    paths = sysconfig.get_paths()
    roots = [paths["stdlib"], paths["purelib"], paths["platlib"], *site.getsitepackages()]
    return [*roots, site.getusersitepackages()]


def _npm_global_root() -> list[str]:
    """`npm root -g` when npm is installed (a local question, nothing is fetched)."""
    npm = shutil.which("npm")
    if npm is None:
        return []
    try:
        out = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [out.stdout.strip()] if out.returncode == 0 and out.stdout.strip() else []


def discover_roots(language: str) -> list[Path]:
    """Directories of installed code in `language` on this machine, resolved, existing,
    without one nested in another."""
    if language == "python":
        found = _python_roots()
    elif language == "c":
        found = ["/usr/include", "/usr/local/include"]
    else:
        found = [*_npm_global_root(), "/usr/lib/node_modules", "/usr/local/lib/node_modules"]
    return outermost(Path(p) for p in found if p)


def outermost(paths: Iterable[Path]) -> list[Path]:
    """Resolved existing directories, dropping those inside another (read once only)."""
    unique = sorted({p.resolve() for p in paths if p.is_dir()})
    return [p for p in unique if not any(q != p and q in p.parents for q in unique)]


def text_hash(text: str) -> str:
    """The content hash of a file as training sees it (normalised, secrets masked)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Gathered:
    """The files a base learns from, as paths relative to "/" (roots are resolved, so the
    training reader opens them without following a link), and the content hash of each."""

    files: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    chars: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def manifest_hash(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.hashes)).encode()).hexdigest()


def _texts(root: Path, selection: FileSelectionConfig, out: Gathered) -> Iterator[tuple[str, str]]:
    """(path relative to "/", masked text) of every trainable file under `root`."""
    chosen = select_files(root, selection, use_git=False)  # installed code, not a work tree
    for reason, n in chosen.skipped.items():
        out.skip(reason, n)
    for rel in chosen.files:
        data, reason = read_source(root, rel, selection)
        if reason is not None:
            out.skip(reason)
            continue
        yield (root / rel).relative_to("/").as_posix(), masked_text(data)[0]


def gather(roots: Iterable[Path], language: str, excluded: set[str]) -> Gathered:
    """Every trainable `language` file under `roots`, each content once, none whose content
    hash is in `excluded` (the repository being served)."""
    selection = selection_for(language)
    out = Gathered()
    seen: set[str] = set()
    for root in outermost(roots):
        for path, text in _texts(root, selection, out):
            digest = text_hash(text)
            if digest in excluded:
                out.skip("in_repository")
            elif digest in seen:
                out.skip("duplicate")
            else:
                seen.add(digest)
                out.files.append(path)
                out.hashes.append(digest)
                out.chars += len(text)
    return out


def read_base_meta(directory: Path) -> dict[str, Any] | None:
    """A complete base's metadata, or None: missing, torn, or its files not the ones recorded."""
    try:
        meta = json.loads((directory / BASE_META).read_text())
        for name, digest in meta["files"].items():
            if sha256_file(directory / name) != digest:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def list_bases(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The complete bases in `root` (default `bases_dir()`), by language."""
    root = root or bases_dir()
    found = {}
    for language in sorted(LANGUAGES):
        meta = read_base_meta(root / language)
        if meta is not None:
            found[language] = meta
    return found
