"""The documentation's code blocks (README.md and the docs/*.md it links), so that tests run exactly what it shows.

``section`` and ``blocks`` find a heading in any of the documents (headings are unique across them, so a section
can move between README.md and docs/ without its tests changing); ``commands`` lists every command line of every
``bash`` block, with continuation lines joined and comments dropped, as tests/test_readme.py types them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.M | re.S)
_HEADING = re.compile(r"^(#+) (.+)$", flags=re.M)


def documents() -> list[Path]:
    """README.md and every docs/*.md it links to, in the order of the links."""
    linked = re.findall(r"\]\((docs/[^)#\s]+\.md)\)", README.read_text())
    return [README, *(ROOT / p for p in dict.fromkeys(linked))]


def section(heading: str) -> str:
    """The text under a Markdown heading (any level, in any document) up to the next heading of the same or a higher
    level. A heading must occur exactly once across the documents."""
    found = []
    for path in documents():
        text = path.read_text()
        for match in re.finditer(rf"^(#+) {re.escape(heading)}\n", text, flags=re.M):
            level = len(match.group(1))
            end = re.search(rf"^#{{1,{level}}} ", text[match.end():], flags=re.M)
            found.append(text[match.end(): match.end() + end.start() if end else len(text)])
    assert len(found) == 1, f"the documentation has {len(found)} sections headed {heading!r} (expected one)"
    return found[0]


def blocks(heading: str, language: str) -> list[str]:
    """The ```language blocks of a section, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", section(heading), flags=re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is (document, the heading above it, its line) and what it holds."""

    doc: str  # path relative to the checkout
    heading: str
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def fenced_blocks() -> list[Block]:
    out = []
    for path in documents():
        text = path.read_text()
        for match in _FENCE.finditer(text):
            headings = list(_HEADING.finditer(text, 0, match.start()))
            out.append(Block(path.relative_to(ROOT).as_posix(), headings[-1].group(2) if headings else "",
                             text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)))
    return out


def commands(block: Block) -> list[str]:
    """The command lines of a bash block: ``\\``-continued lines joined, comments and blank lines dropped, runs of
    spaces made one (so that aligning a comment column does not change a command)."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    lines = [re.sub(r"(^|\s+)#\s.*$|^#.*$", "", line) for line in joined.splitlines()]
    return [" ".join(line.split()) for line in lines if line.strip()]
