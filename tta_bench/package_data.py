"""Project files kept at the top of the checkout that an installed package needs too: the suite specifications
(``suites/``) and the published numbers (``results/published/``).

The checkout is the one place they are written. Run from a checkout (or an editable install) the package reads them
there; a built wheel (``pip install .``) carries a copy made at build time by setup.py's build hook, under
``tta_bench/_bundled/`` (never committed), which the package reads when no checkout surrounds it.
"""
from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
BUNDLED = Path(__file__).resolve().parent / "_bundled"
SHIPPED = ("suites", "results/published")  # top-level folders whose files a wheel carries (setup.py copies them)


def in_checkout() -> bool:
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "tta_bench").is_dir()


def project_path(relative: str) -> Path:
    """``relative`` (e.g. "suites") in the checkout when there is one, else in the installed package's copy."""
    return (CHECKOUT if in_checkout() else BUNDLED) / relative
