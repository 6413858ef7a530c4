"""`pip install .` (not editable): the wheel carries the suites and published numbers, and the `tta-bench` console
script lists the suites from any folder. Built from a copy of the checkout, installed with --target (the test
environment's own install is not touched)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "tta_bench", "suites", "results/published")


@pytest.mark.slow
def test_a_non_editable_install_lists_the_suites(tmp_path):
    tree = tmp_path / "checkout"
    for name in SOURCES:
        source, target = ROOT / name, tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, target)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(tree), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tta_bench-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, cwd=tmp_path)
    shipped = site / "tta_bench" / "_bundled"
    assert not shipped.joinpath("suites").is_symlink()  # copies, not links to a checkout that is not there
    assert sorted(p.name for p in (shipped / "suites").iterdir()) == sorted(p.name for p in (ROOT / "suites").glob("*.yaml"))
    assert sorted(p.name for p in (shipped / "results" / "published").iterdir()) == sorted(
        p.name for p in (ROOT / "results" / "published").glob("*.csv"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    elsewhere = tmp_path / "elsewhere"  # no checkout around: the package must read its own copies
    elsewhere.mkdir()
    listed = subprocess.run([str(site / "bin" / "tta-bench"), "list"], env=env, cwd=elsewhere, capture_output=True,
                            text=True)
    assert listed.returncode == 0, listed.stderr
    for suite in ("demo", "imagenet-c", "cifar10-c"):
        assert f"  {suite} " in listed.stdout
    check = ("import tta_bench, tta_bench.report as r; from pathlib import Path; "
             "assert Path(tta_bench.__file__).is_relative_to(Path(r'%s')), tta_bench.__file__; "
             "assert len(r.load_published()) > 0" % site)
    subprocess.run([sys.executable, "-c", check], env=env, cwd=elsewhere, check=True)
