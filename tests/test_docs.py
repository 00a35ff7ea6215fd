"""The documentation's links (README.md, docs/, the editor plugins' READMEs): every relative
link leads to a file that exists and, for an #anchor, to a heading of that file; the README
links every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS, *sorted((ROOT / "clients").glob("*/README.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)


def prose(path: Path) -> str:
    """The page without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    """The page's links that lead inside the repository (no scheme, no mail address)."""
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", t)]


def broken_link(page: Path, target: str) -> str | None:
    """Why `target`, linked from `page`, leads nowhere; None when it leads somewhere."""
    file_part, _, anchor = target.partition("#")
    destination = (page.parent / file_part).resolve() if file_part else page
    if not destination.exists():
        return f"{target}: no file {destination.relative_to(ROOT)}"
    if anchor and anchor not in anchors(destination):
        return f"{target}: no heading #{anchor} in {destination.relative_to(ROOT)}"
    return None


def test_every_relative_link_leads_to_a_file_and_heading() -> None:
    broken = {
        page.relative_to(ROOT).as_posix(): [
            why for target in relative_links(page) if (why := broken_link(page, target))
        ]
        for page in PAGES
    }
    assert broken == {page.relative_to(ROOT).as_posix(): [] for page in PAGES}


def test_the_readme_links_every_page_of_the_reference() -> None:
    linked = {target.partition("#")[0] for target in relative_links(ROOT / "README.md")}
    pages = {f"docs/{page.name}" for page in DOCS}
    assert pages and pages <= linked, pages - linked


def test_the_readme_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
