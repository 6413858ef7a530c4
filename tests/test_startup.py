"""`--help` and `list` import neither torch, torchvision nor pandas (their time: benchmarks/startup.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pandas", "timm", "open_clip", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["table", "--help"], ["plot", "--help"]])
def test_quick_commands_import_no_heavy_library(argv):
    code = (f"import sys; from tta_bench.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"heavy = sorted(set({HEAVY!r}) & set(sys.modules))\n"
            f"assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_list_names_everything_registered():
    done = subprocess.run([sys.executable, "run_bench.py", "list"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    from tta_bench.methods import METHODS
    from tta_bench.teachers import TEACHERS

    for name in METHODS.names() + TEACHERS.names():
        assert f"  {name} " in done.stdout
