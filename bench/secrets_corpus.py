"""Secret masking measured: fake secrets it misses, and real code it masks.

Per format of the tests' corpus (tests/secrets_corpus.py: generated fake secrets in the lines
they are usually pasted in), how many samples `mask_secrets` masks, and how many still show the
secret or a piece of it (8 characters or more). Then the false positives: every .py file of the
Python standard library masked, with the number of values masked and some of the lines (the
standard library's own tests hold a few real-looking fake keys and URLs with passwords, which
count here too). Prints Markdown.

    .venv/bin/python bench/secrets_corpus.py
    .venv/bin/python bench/secrets_corpus.py --samples 500 --examples 40
"""

from __future__ import annotations

import argparse
import difflib
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' corpus

from completiond.core.secrets import mask_secrets
from tests.secrets_corpus import FORMATS, fragments, samples


def format_table(per_format: int, seed: int) -> list[str]:
    """One row per format: samples, masked whole, leaked (the secret or a piece of it left)."""
    total: Counter[str] = Counter()
    leaked: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for sample in samples(seed, per_format):
        masked, _ = mask_secrets(sample.line)
        total[sample.format] += 1
        if any(f in masked for f in fragments(sample.secret)):
            leaked[sample.format] += 1
            examples.setdefault(sample.format, masked)
    rows = ["| format | samples | masked | leaked |", "|---|---:|---:|---:|"]
    for fmt in FORMATS:
        n, bad = total[fmt.name], leaked[fmt.name]
        rows.append(f"| {fmt.name} | {n} | {n - bad} | {bad} |")
    n, bad = total.total(), leaked.total()
    rows.append(f"| **all** | {n} | {n - bad} | {bad} |")
    rows += [f"\nleaked, e.g. ({name}): `{line[:120]}`" for name, line in examples.items()]
    return rows


def masked_lines(original: str, masked: str) -> list[tuple[str, str]]:
    """The lines masking changed, before and after."""
    a, b = original.splitlines(), masked.splitlines()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.append((" / ".join(a[i1:i2])[:160], " / ".join(b[j1:j2])[:160]))
    return out


def stdlib_report(examples: int) -> list[str]:
    """Values masked in the standard library's .py files, and some of the lines."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    count, chars, hit_files, seconds = 0, 0, 0, 0.0
    changed: list[tuple[str, str, str]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        chars += len(text)
        start = time.perf_counter()
        masked, n = mask_secrets(text)
        seconds += time.perf_counter() - start
        if n:
            count += n
            hit_files += 1
            rel = str(path.relative_to(root))
            changed += [(rel, a, b) for a, b in masked_lines(text, masked)]
    tests = sum(1 for rel, _, _ in changed if rel.startswith(("test", "idlelib/idle_test")))
    rows = [
        f"\n**Standard library** ({root}): {len(files)} files, {chars / 1e6:.1f} M characters, "
        f"masked in {seconds:.1f} s ({chars / 1e6 / seconds:.1f} M characters/s).",
        f"{count} values masked in {hit_files} files ({len(changed)} changed lines, {tests} of "
        "them in the test suites).\n",
        "| file | line | masked |",
        "|---|---|---|",
    ]
    step = max(1, len(changed) // examples)
    for rel, before, after in changed[::step][:examples]:
        rows.append(f"| {rel} | `{_cell(before)}` | `{_cell(after)}` |")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="per format")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=25, help="masked stdlib lines shown")
    args = parser.parse_args()
    print("\n".join(format_table(args.samples, args.seed)))
    print("\n".join(stdlib_report(args.examples)))


if __name__ == "__main__":
    main()
