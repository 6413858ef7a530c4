"""`table --ci` and `table --baseline`: an interval on every cell, paired differences marked where significant,
rows on other samples not paired, online rows resampled by batches, seeds, LaTeX daggers; through the CLI."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tta_bench.cli import main
from tta_bench.report import table_command
from tta_bench.report.intervals import wilson

from tests.conftest import SHARED, needs_shared
from .conftest import write_run

N = 640


def _flags(accuracy: float, seed: int, n: int = N) -> list[bool]:
    return (np.random.default_rng(seed).random(n) < accuracy).tolist()


@pytest.fixture
def runs(tmp_path):
    """source 20% and bn_adapt 60% (online, batch 32) on the same 640 samples of two splits; tent equal to source
    sample for sample; a source run on another 50 samples (--limit 50)."""
    root = tmp_path / "runs"
    source = {"gaussian_noise-5": _flags(0.2, 1), "fog-5": _flags(0.4, 2)}
    write_run(root, "source", "source", source)
    write_run(root, "bn", "bn_adapt", {"gaussian_noise-5": _flags(0.6, 3), "fog-5": _flags(0.7, 4)}, online=True,
              batch_size=32, shuffle=True)
    write_run(root, "tent", "tent", source, online=True, batch_size=32)
    return root


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False).set_index(["table", "method"])


def test_ci_gives_every_cell_its_interval_and_says_how_it_was_resampled(runs):
    table = _csv(table_command([str(runs)], "csv", False, "top1", ci=True))
    source = table.loc[("cifar10-c", "source (resnet20)")]
    k = sum(_flags(0.2, 1))
    low, high = wilson(k, N)
    assert source["gaussian_noise-5"] == f"{100 * k / N:.1f} [{low:.1f}, {high:.1f}]"  # Wilson for one split
    assert source["resampled"] == "samples" and source["n"] == str(2 * N)
    bn = table.loc[("cifar10-c", "bn_adapt (resnet20)")]
    assert bn["resampled"] == "batches of 32"
    for cell in [*source[["gaussian_noise-5", "fog-5", "mean"]], *bn[["gaussian_noise-5", "fog-5", "mean"]]]:
        value, interval = cell.split(" [")
        low, high = map(float, interval.rstrip("]").split(", "))
        assert low < float(value) < high and high - low < 12


def test_baseline_marks_a_real_difference_and_not_an_identical_row(runs):
    text = table_command([str(runs)], "csv", False, "top1", baseline="source")
    table = _csv(text)
    accuracy = table.loc[("cifar10-c", "bn_adapt (resnet20)")]
    assert accuracy["mean"].endswith("†")  # marked in the accuracy table too
    differences = table.loc["cifar10-c: difference to source"]
    bn = differences.loc["bn_adapt (resnet20)"]
    assert bn["gaussian_noise-5"].startswith("+") and "†" in bn["gaussian_noise-5"]
    assert bn["mean"].endswith("p<0.001") and bn["resampled"] == "batches of 32"
    tent = differences.loc["tent (resnet20)"]
    assert tent["gaussian_noise-5"] == "0.00 [0.00, 0.00] p=1.000" and tent["mean"] == "0.00 [0.00, 0.00] p=1.000"
    assert "source (resnet20)" not in differences.index  # the baseline itself


def test_rows_on_other_samples_are_not_paired_and_the_table_says_why(runs):
    write_run(runs, "source-50", "source", {"gaussian_noise-5": _flags(0.2, 5, 50), "fog-5": _flags(0.4, 6, 50)},
              subset="limit-50")
    write_run(runs, "tent-50", "tent", {"gaussian_noise-5": _flags(0.9, 7, 50), "fog-5": _flags(0.9, 8, 50)},
              subset="limit-50", online=True, batch_size=5)
    write_run(runs, "memo-100", "memo", {"gaussian_noise-5": _flags(0.2, 5, 100), "fog-5": _flags(0.4, 6, 100)},
              subset="limit-100")
    differences = _csv(table_command([str(runs)], "csv", False, "top1", baseline="source")).loc[
        "cifar10-c: difference to source"]
    assert differences.loc["tent (resnet20) [limit-50]", "baseline"] == "source (resnet20) [limit-50]"  # its own
    assert differences.loc["tent (resnet20) [limit-50]", "mean"].startswith("+")
    memo = differences.loc["memo (resnet20) [limit-100]"]
    assert memo["note"] == "not paired: subset limit-100 vs full" and memo["mean"] == ""


def test_a_table_without_the_baseline_method_is_refused_naming_the_methods(runs):
    with pytest.raises(ValueError, match="--baseline eata: no row of that method; methods here: bn_adapt, source"):
        table_command([str(runs)], "md", False, "top1", baseline="eata")
    with pytest.raises(ValueError, match="intervals and paired differences are computed for top1, top5, error"):
        table_command([str(runs)], "md", False, "ece", ci=True)


def test_resampling_samples_overrides_the_online_default(runs):
    table = _csv(table_command([str(runs)], "csv", False, "top1", ci=True, resampling="samples"))
    assert set(table["resampled"]) == {"samples"}


def test_seeds_show_mean_std_beside_the_interval_of_their_mean(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path, f"tent-{seed}", "tent", {"fog-5": _flags(0.5 + 0.05 * seed, seed, 400)}, seed=seed,
                  online=True, batch_size=20, shuffle=True)
    cell = _csv(table_command([str(tmp_path)], "csv", False, "top1", ci=True)).iloc[0]["fog-5"]
    mean_std, interval = cell.split(" [")
    assert " ± " in mean_std
    text = table_command([str(tmp_path)], "md", False, "top1", ci=True)
    assert "±: standard deviation over seeds; the interval is that of the seeds' mean" in text


def test_latex_marks_significant_cells_with_a_dagger_and_names_the_test(runs):
    text = table_command([str(runs)], "latex", False, "top1", ci=True, baseline="source")
    assert r"$^\dagger$" in text and "†" not in text
    assert text.count(r"\begin{table}") == 2 and r"\label{tab:cifar10-c-top1-vs-source}" in text
    captions = [line for line in text.splitlines() if line.startswith(r"\caption{")]
    assert "paired bootstrap interval of the difference excludes 0" in captions[0]
    assert "McNemar's exact test" in captions[1] and "p$<$0.001" in text


def test_the_cli_prints_intervals_and_differences(runs, capsys):
    assert main(["table", str(runs), "--ci", "--baseline", "source"]) == 0
    out = capsys.readouterr().out
    assert "## cifar10-c: difference to source (top1, points)" in out and "McNemar's exact test" in out
    assert main(["table", str(runs), "--ci", "--at-step", "3"]) == 2
    assert "drop --at-step" in capsys.readouterr().err


@needs_shared
def test_on_real_runs_bn_adaptation_differs_significantly_and_seeds_of_a_deterministic_method_do_not(tmp_path):
    """ResNet-20 on generated CIFAR-10-C (the shared CIFAR-10 images): source and BN adaptation on gaussian_noise-5
    and contrast-5 (200 samples each, batches of 10); source again under seed 1 (contrast is deterministic, so
    its images and predictions are the same; the noise of gaussian_noise is drawn again)."""
    from tta_bench import engine
    from tta_bench.config import RunConfig
    from tta_bench.report.compare import compare_command

    def run(method: str, seed: int) -> str:
        cfg = RunConfig(suite="cifar10-c", source="generated", data_root=str(SHARED / "cifar10-test-jpeg"),
                        teacher="cifar-resnet20", weights=str(SHARED / "weights" / "resnet20-12fca82f.th"),
                        method=method, corruptions=["gaussian_noise", "contrast"], limit=200, batch_size=10, seed=seed,
                        num_workers=0, device="cpu", out=str(tmp_path / f"{method}-{seed}"))
        engine.run(cfg, progress=False, log=lambda *_: None)
        return cfg.out

    source, bn = run("source", 0), run("bn_adapt", 0)
    table = _csv(table_command([source, bn], "csv", False, "top1", ci=True, baseline="source"))
    accuracy = table.loc["cifar10-c"]
    for cell in accuracy[["gaussian_noise-5", "contrast-5", "mean"]].to_numpy().ravel():
        assert " [" in cell and "–" not in cell  # an interval in every cell
    bn_row = accuracy.loc["bn_adapt (cifar-resnet20) [generated from 2000 images, limit-200, short domains: 200 of 10,000]"]
    assert bn_row["resampled"] == "batches of 10" and bn_row["gaussian_noise-5"].split(" [")[0].endswith("†")
    difference = table.loc["cifar10-c: difference to source"].iloc[0]["gaussian_noise-5"]
    assert difference.startswith("+") and "†" in difference and difference.endswith("p<0.001")
    rows = {line.split("|")[1].strip(): line for line in compare_command(source, run("source", 1)).splitlines()
            if line.startswith("| ")}
    cells = [cell.strip() for cell in rows["contrast-5"].strip("|").split("|")]
    assert cells[3:7] == ["0.00 [0.00, 0.00]", "p=1.000", "0", "0"]


def test_a_difference_of_a_few_hundredths_reads_as_such():
    from tta_bench.report.tables import difference_text

    assert difference_text(0.03, (0.01, 0.06), True) == "+0.03† [0.01, 0.06]"
    assert difference_text(-0.001, (-0.004, 0.002), False) == "0.00 [0.00, 0.00]"
    assert difference_text(-1.25, None, False) == "-1.25 [–]"
