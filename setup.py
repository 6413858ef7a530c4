"""Build hook (everything else is in pyproject.toml): a wheel carries a copy of the checkout's suites/ and
results/published/ under tta_bench/_bundled/, so a non-editable install (``pip install .``) has its suites and
published numbers, while the checkout stays the one place they are written (tta_bench/package_data.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("suites", "results/published")  # as tta_bench.package_data.SHIPPED (not importable before the build)


class BuildWithProjectFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        for folder in SHIPPED:
            target = Path(self.build_lib) / "tta_bench" / "_bundled" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted(Path(folder).glob("*")):
                if source.is_file() and not source.name.startswith("."):
                    shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildWithProjectFiles})
