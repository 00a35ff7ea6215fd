"""Corpus preparation: the repository's trainable files read and split by file.

Splitting by file (not by line) keeps validation honest: a held-out file shares no lines with
training, as a newly written file would not.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from completiond.errors import CorpusError

from .files import FileSelectionConfig, select_files, split_files
from .secrets import mask_secrets

MASKED = "masked_secrets"  # key in `read_files`' counts: secret values masked, not files skipped


@dataclass
class Corpus:
    train_text: str
    val_text: str
    train_files: list[str]
    val_files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    commit: str = ""
    fingerprint: str = ""  # of every file read: a retrain is due when it changes

    def summary(self) -> dict[str, object]:
        return {
            "train_files": len(self.train_files),
            "val_files": len(self.val_files),
            "train_chars": len(self.train_text),
            "val_chars": len(self.val_text),
            "skipped": self.skipped,
            "commit": self.commit,
            "fingerprint": self.fingerprint,
        }


def _read(root: Path, rel: str) -> str | None:
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # changed or vanished since selection: skip, never fail the run
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def _head_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def read_files(
    root: Path, selection: FileSelectionConfig | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """The trainable files' normalised texts by path, secrets masked (so no model can learn
    them), and the skipped files' counts by reason plus, under MASKED, the secrets masked."""
    chosen = select_files(root, selection or FileSelectionConfig())
    skipped = dict(chosen.skipped)
    texts: dict[str, str] = {}
    masked = 0
    for rel in chosen.files:
        text = _read(root, rel)
        if text is None:
            skipped["unreadable"] = skipped.get("unreadable", 0) + 1
        else:
            texts[rel], n = mask_secrets(text)
            masked += n
    if masked:
        skipped[MASKED] = masked
    return texts, skipped


def read_texts(root: Path, files: Iterable[str]) -> dict[str, str]:
    """Files as training reads them (normalised line breaks, secrets masked, so nothing built
    from them can show one); unreadable ones are left out."""
    texts = {}
    for rel in files:
        text = _read(root, rel)
        if text is not None:
            texts[rel] = mask_secrets(text)[0]
    return texts


def fingerprint(texts: dict[str, str]) -> str:
    """Changes exactly when the training text would: a file added, removed, renamed or edited
    (not when an ignored file changes or a file is only touched)."""
    digest = hashlib.sha256()
    for rel in sorted(texts):
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(hashlib.sha256(texts[rel].encode("utf-8", "surrogateescape")).digest())
    return digest.hexdigest()


def build_corpus(
    root: Path, selection: FileSelectionConfig | None = None, val_fraction: float = 0.1
) -> Corpus:
    """Select, read and split; CorpusError when nothing trainable is left."""
    texts, skipped = read_files(root, selection)
    if sum(len(t) for t in texts.values()) < 2:
        reasons = (
            ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()) if why != MASKED)
            or "none found"
        )
        raise CorpusError(f"no trainable source files in {root} (skipped: {reasons})")
    train_files, val_files = split_files(sorted(texts), val_fraction)
    train_text = "".join(texts[f] for f in train_files)
    val_text = "".join(texts[f] for f in val_files)
    if not val_text:
        # A single file: hold out its last lines, so there still is a validation score.
        lines = train_text.splitlines(keepends=True)
        cut = max(1, int(len(lines) * (1 - val_fraction)))
        train_text, val_text = "".join(lines[:cut]), "".join(lines[cut:]) or lines[-1]
    return Corpus(
        train_text,
        val_text,
        train_files,
        val_files,
        skipped,
        _head_commit(root),
        fingerprint(texts),
    )
