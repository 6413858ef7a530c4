"""Project files kept at the top of the checkout that an installed package needs too: the suite specifications
(``suites/``) and the published numbers (``results/published/``).

The checkout is the one place they are written; ``tta_bench/_bundled/`` holds links to them, which the package reads
and which a built wheel (``pip install .``) turns into copies (pyproject.toml's package-data names them once).
"""
from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).resolve().parent / "_bundled"


def project_path(relative: str) -> Path:
    """``relative`` (e.g. "suites"): the checkout's folder, through the package's link to it, or an installed
    package's copy."""
    return (BUNDLED / relative).resolve()
