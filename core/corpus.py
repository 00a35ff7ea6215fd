"""Corpus preparation: the repository's trainable files read and split by file.

Splitting by file (not by line) keeps validation honest: a held-out file shares no lines with
training, as a newly written file would not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorpusError
from .files import DEFAULT_CONFIG, FileSelectionConfig, read_source, select_files, split_files
from .git import git_output
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


def masked_text(data: bytes) -> tuple[str, int]:
    """A file's bytes as everything built from them sees them (line breaks normalised, a final
    newline, secrets masked so no model or index can show one) and the secrets masked."""
    text = data.decode("utf-8").replace("\r\n", "\n")
    return mask_secrets(text if text.endswith("\n") else text + "\n")


def read_text(root: Path, rel: str, selection: FileSelectionConfig = DEFAULT_CONFIG) -> str | None:
    """A training file's text, or None when it is no longer trainable: changed, vanished, grown
    too large, or swapped for a symlink or a device since it was selected."""
    data, reason = read_source(root, rel, selection)
    return None if reason is not None else masked_text(data)[0]


def _head_commit(root: Path) -> str:
    out = git_output(root, "rev-parse", "HEAD", timeout_s=10)
    return out.decode(errors="replace").strip() if out else ""


def read_files(
    root: Path, selection: FileSelectionConfig | None = None, only: Iterable[str] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """The trainable files' normalised texts by path, secrets masked (so no model can learn
    them), and the skipped files' counts by reason plus, under MASKED, the secrets masked.
    With `only`, the files equal to or under those paths (the ones a file event named)."""
    selection = selection or DEFAULT_CONFIG
    chosen = select_files(root, selection, only)
    skipped = dict(chosen.skipped)
    texts: dict[str, str] = {}
    masked = 0
    for rel in chosen.files:
        data, reason = read_source(root, rel, selection)
        if reason is not None:  # changed since selection
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            texts[rel], n = masked_text(data)
            masked += n
    if masked:
        skipped[MASKED] = masked
    return texts, skipped


def read_texts(root: Path, files: Iterable[str]) -> dict[str, str]:
    """Training files' texts by path (see `read_text`); untrainable ones are left out."""
    texts = {}
    for rel in files:
        text = read_text(root, rel)
        if text is not None:
            texts[rel] = text
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
