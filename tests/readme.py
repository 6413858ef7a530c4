"""The README's code blocks, by section, so that tests run exactly what the README shows."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(heading: str) -> str:
    """The text under a Markdown heading (any level) up to the next heading of the same or a higher level."""
    text = README.read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, flags=re.M)
    assert match, f"README has no section {heading!r}"
    level = len(match.group(1))
    end = re.search(rf"^#{{1,{level}}} ", text[match.end():], flags=re.M)
    return text[match.end(): match.end() + end.start() if end else len(text)]


def blocks(heading: str, language: str) -> list[str]:
    """The ```language blocks of a section, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", section(heading), flags=re.M | re.S)
