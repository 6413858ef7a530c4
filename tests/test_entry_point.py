"""Every subcommand through the installed console script (`tta-bench`, pyproject.toml [project.scripts]) in a process of
its own, as a user types it: exit code, output and what it writes. The data is a small generated ImageNet folder and
the teacher the random `tiny` one, so each command takes seconds."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WNIDS, write_images
from tta_bench.report.check import write_reference

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--teacher", "tiny", "--workers", "0", "--device", "cpu", "--no-progress")


def _entry_point() -> str:
    found = shutil.which("tta-bench", path=str(Path(sys.executable).parent)) or shutil.which("tta-bench")
    assert found, "the tta-bench console script is not installed: pip install -e ."
    return found


def tta_bench(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`tta-bench ARGS` with this checkout's code (PYTHONPATH), stdout and stderr together."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TTA_BENCH_CACHE": str(cwd / "cache")}
    return subprocess.run([_entry_point(), *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a small ImageNet validation set and one finished run (source, logits saved) made by `run`."""
    work = tmp_path_factory.mktemp("entry")
    write_images(work / "val", {w: 4 for w in WNIDS}, size=16)
    done = tta_bench("run", "--suite", "imagenet", "--data-root", work / "val", "--allow-partial", *TINY,
                     "--batch-size", "4", "--save-logits", "--out", work / "runs" / "source", cwd=work)
    (work / "run.log").write_text(done.stdout)
    assert done.returncode == 0, done.stdout
    return work


def test_run_prints_the_table_and_writes_the_run_folder(work):
    out = (work / "run.log").read_text()
    assert "| source (tiny)" in out and f"run folder: {work / 'runs' / 'source'}" in out
    summary = json.loads((work / "runs" / "source" / "summary.json").read_text())
    assert summary["splits"]["imagenet"]["n"] == 12 and summary["config"]["save_logits"]


def test_a_run_file_with_options_typed_after_it(work):
    run_file = work / "run.yaml"
    run_file.write_text(f"suite: imagenet\nmethod: bn_adapt\ndata_root: {work / 'val'}\nallow_partial: true\n"
                        "batch_size: 2\n")
    done = tta_bench("--config", run_file, *TINY, "--batch-size", "6", "--out", work / "runs" / "bn", cwd=work)
    assert done.returncode == 0, done.stdout
    assert "| bn_adapt (tiny)" in done.stdout and "batch size 6" in done.stdout  # typed, not the file's 2
    assert "a batch of 6 is too small" in done.stdout  # the warning of a BN-statistics method below 16
    config = json.loads((work / "runs" / "bn" / "config.json").read_text())
    assert config["method"] == "bn_adapt" and config["batch_size"] == 6


def test_list(work):
    done = tta_bench("list", cwd=work)
    assert done.returncode == 0 and "suites" in done.stdout and "\n  tent " in done.stdout


def test_table(work):
    done = tta_bench("table", work / "runs" / "source", "--format", "csv", cwd=work)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[1].startswith("source (tiny)")


def test_plot(work):
    done = tta_bench("plot", work / "runs" / "source", "--out", work / "plots", cwd=work)
    assert done.returncode == 0, done.stdout
    written = [Path(line) for line in done.stdout.splitlines() if line.endswith(".png")]
    assert written and all(p.is_file() and p.stat().st_size > 0 for p in written)


def test_check_passes_its_own_reference_and_fails_a_higher_one(work):
    summary = json.loads((work / "runs" / "source" / "summary.json").read_text())
    passing = write_reference(summary, tolerance=0.0)
    failing = {**passing, "splits": {k: v + 5 for k, v in passing["splits"].items()}}
    for name, reference, rc, verdict in (("pass", passing, 0, "check: PASS"), ("fail", failing, 1, "check: FAIL")):
        path = work / f"reference-{name}.json"
        path.write_text(json.dumps(reference))
        done = tta_bench("check", work / "runs" / "source", "--reference", path, cwd=work)
        assert done.returncode == rc and done.stdout.startswith(verdict), done.stdout


def test_metrics_from_saved_logits(work):
    done = tta_bench("metrics", work / "runs" / "source", "--metric", "top1,ece", cwd=work)
    assert done.returncode == 0, done.stdout
    assert "ece" in done.stdout and (work / "runs" / "source" / "metrics.json").is_file()


def _sweep_file(work: Path) -> Path:
    path = work / "grid.yaml"
    path.write_text(f"name: grid\nbase: {{suite: imagenet, teacher: tiny, data_root: {work / 'val'}, "
                    "allow_partial: true, num_workers: 0, device: cpu, batch_size: 4}\n"
                    "grid: {method: [source, lame]}\n")
    return path


def test_sweep_runs_the_grid_and_a_rerun_reuses_it(work):
    path = _sweep_file(work)
    first = tta_bench("sweep", path, "--out", work / "sweep", "--no-progress", cwd=work)
    assert first.returncode == 0 and "sweep: 2 run(s) run, 0 reused, 0 failed" in first.stdout, first.stdout
    again = tta_bench("sweep", path, "--out", work / "sweep", "--no-progress", cwd=work)
    assert again.returncode == 0 and "sweep: 0 run(s) run, 2 reused, 0 failed" in again.stdout, again.stdout


def test_reproduce_a_sweep_file(work):
    done = tta_bench("reproduce", _sweep_file(work), "--out", work / "reproduced", "--no-progress", cwd=work)
    assert done.returncode == 0, done.stdout
    assert "| lame (tiny)" in done.stdout and "| source (tiny)" in done.stdout
    assert "no measured row has a published counterpart yet" in done.stdout


def test_islands(work):
    image = next((work / "val").rglob("*.JPEG"))
    out = work / "islands.png"
    done = tta_bench("islands", "--image", image, "--teacher", "effnet-lite0", "--steps", "2", "--opt", "grid=4",
                     "--opt", "patch=16", "--device", "cpu", "--out", out, cwd=work)
    assert done.returncode == 0, done.stdout
    assert str(out) in done.stdout and out.stat().st_size > 0


def test_a_user_error_is_one_line_and_exit_2(work):
    done = tta_bench("--suite", "imagenet-k", "--dry-run", cwd=work)
    assert done.returncode == 2 and done.stdout.startswith("error: unknown suite 'imagenet-k'"), done.stdout
    assert done.stdout.count("\n") == 1


def test_compare_two_runs_on_the_same_samples(work):
    from tta_bench.cli import COMMANDS

    if "compare" not in COMMANDS:
        pytest.skip("this version has no compare subcommand")
    if not (work / "runs" / "bn" / "summary.json").exists():
        test_a_run_file_with_options_typed_after_it(work)
    done = tta_bench("compare", work / "runs" / "source", work / "runs" / "bn", cwd=work)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith(f"A: {work / 'runs' / 'source'}") and "McNemar" in done.stdout
