"""Training progress events: shown as a progress bar, streamed by the Retrain RPC.

A training child process writes one JSON object per line on stdout; the daemon parses them back.
Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TextIO

PHASES = ("starting", "corpus", "training", "exporting", "done", "rejected", "failed")
FINAL_PHASES = ("done", "rejected", "failed")  # rejected: trained fine, but not better


@dataclass(frozen=True)
class Progress:
    phase: str  # one of PHASES
    fraction: float = 0.0  # of the whole run, 0..1
    eta_s: float = 0.0
    val_bpc: float = 0.0  # best validation bits per character so far; 0 = not measured yet
    message: str = ""
    version: str = ""  # the published bundle, with phase "done"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Progress:
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("phase") not in PHASES:
            raise ValueError(f"not a progress line: {line[:80]!r}")
        return cls(**{k: obj[k] for k in obj if k in cls.__dataclass_fields__})


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    """Renders Progress on a terminal: one redrawn line on a TTY, a line per change elsewhere."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last_line = ""

    def update(self, progress: Progress) -> None:
        filled = int(self.width * min(1.0, max(0.0, progress.fraction)))
        bar = "#" * filled + "." * (self.width - filled)
        parts = [f"[{bar}] {100 * progress.fraction:3.0f}% {progress.phase}"]
        if progress.phase not in FINAL_PHASES and progress.eta_s:
            parts.append(f"ETA {_clock(progress.eta_s)}")
        if progress.val_bpc:
            parts.append(f"val {progress.val_bpc:.3f} bits/char")
        if progress.message:
            parts.append(progress.message)
        line = "  ".join(parts)
        final = progress.phase in FINAL_PHASES
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        elif final or line.split("  ")[0] != self._last_line.split("  ")[0]:
            self.stream.write(line + "\n")  # logs get a line when the percent or phase moves
        self._last_line = line
        self.stream.flush()
