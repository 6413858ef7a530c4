"""results/published/published.csv: loads, typed, and flags what cannot be trusted."""
from __future__ import annotations

import pytest

from tta_bench.report import load_published
from tta_bench.report.published import COLUMNS
from tta_bench.vocabulary import CORRUPTIONS


@pytest.fixture(scope="module")
def published():
    return load_published()


def test_columns_and_types(published):
    assert tuple(published.columns) == COLUMNS
    assert published["value"].dtype == float
    assert published["verified"].dtype == bool
    assert set(published["metric"]) == {"top1", "error"}


def test_apm_imagenet_c_names_its_secondary_sources_and_is_unverified(published):
    """50.3 reached us through a NeurIPS 2024 poster summary and aggregator pages, not from the paper's Table 2."""
    row = published[(published.method == "apm") & (published.suite == "imagenet-c")]
    assert len(row) == 1
    assert (row.split.item(), row.metric.item(), row.value.item(), row.verified.item()) == ("mean", "top1", 50.3, False)
    assert "poster summary" in row.source.item() and "aggregator" in row.source.item()
    assert "not from the paper's Table 2 itself" in row.note.item()
    dtd = published[(published.method == "apm") & (published.suite == "dtd")]
    assert dtd.value.item() == 49.1 and not dtd.verified.item()


def test_wrn_tent_rows_name_the_tent_readme_they_come_from(published):
    wrn = published[(published.backbone == "wrn-28-10") & (published.split == "mean")].set_index("method")
    assert wrn.value.to_dict() == {"source": 43.5, "bn-adapt": 20.4, "tent": 18.6} and wrn.verified.all()
    assert set(wrn.source) == {"TENT repository README (DequanWang/tent), WRN-28-10 example"}
    assert all("cited before as the TENT paper" in note for note in wrn.note)


def test_verified_rows_are_those_checked_against_the_source_they_name(published):
    """Checked here against the named repository: the open_clip results table, TPT's README (its RN50 rows), TENT's
    README, TDA's README (its RN50 OOD and cross-domain tables). Everything else (paper tables without a copy offline, aggregators) stays unverified until checked."""
    verified = published[published.verified]
    assert set(verified.source) == {
        "open_clip docs/openclip_results.csv (mlfoundations/open_clip)",
        "TPT (Shu et al. NeurIPS 2022) Table 1, as in the authors' README (azshue/TPT)",
        "TENT repository README (DequanWang/tent), WRN-28-10 example",
        "TDA (Karmanov et al. CVPR 2024) kdiAAA/TDA README.md",
        "unified TTA benchmark (mariodoebler/test-time-adaptation) classification/benchmark.md"}
    assert len(verified) == 15 + 10 + 3 + 15 + 23
    unchecked = published[published.source.str.startswith("TPT") & ~published.verified]
    assert len(unchecked) == 45 and unchecked.note.str.contains("not checked against the paper here").all()


def test_unified_benchmark_cifar10c_rows_per_setting_name_the_commit_they_were_checked_against(published):
    """benchmark.md's CIFAR10-C rows of the methods tta_bench has, one split per stream setting (mean-<setting>);
    the correlated table has no BN-1 column (its ResNet-26 has GroupNorm)."""
    unified = published[published.source.str.startswith("unified TTA benchmark")]
    assert unified.verified.all() and set(unified.metric) == {"error"} and set(unified.suite) == {"cifar10-c"}
    assert unified.note.str.contains("ef3a2a683974d8de306c1cac5e34c0c38fc950b8").all()
    by_setting = {split: rows.set_index("method").value.to_dict() for split, rows in unified.groupby("split")}
    assert by_setting["mean-continual"] == {"source": 43.5, "bn-adapt": 20.4, "tent": 20.0, "eata": 17.9,
                                            "sar": 20.4, "cotta": 16.5, "rotta": 19.3, "lame": 64.3}
    assert by_setting["mean-mixed_domains"]["tent"] == 44.1 and by_setting["mean-mixed_domains"]["lame"] == 75.2
    assert by_setting["mean-correlated"] == {"source": 32.7, "tent": 87.6, "eata": 40.8, "sar": 37.1, "cotta": 44.5,
                                             "rotta": 33.7, "lame": 11.3}
    assert set(unified[unified.split == "mean-correlated"].backbone) == {"resnet-26-gn"}


def test_aggregator_and_ttt_mae_rows_are_unverified(published):
    aggregator = published[published.source == "aggregator sites"]
    assert len(aggregator) == 6 and not aggregator.verified.any()  # five ImageNet/CIFAR rows, APM on Aircraft
    assert (aggregator.note != "").all()
    ttt = published[published.source.str.startswith("TTT-MAE")]
    assert len(ttt) == 30 and not ttt.verified.any()
    assert set(ttt.split) == {f"{c}-5" for c in CORRUPTIONS}


def test_blocks_are_complete(published):
    counts = published.groupby("source").size().to_dict()
    assert counts["TPT (Shu et al. NeurIPS 2022) Table 1"] + counts[
        "TPT (Shu et al. NeurIPS 2022) Table 1, as in the authors' README (azshue/TPT)"] == 35
    assert counts["TPT (Shu et al. NeurIPS 2022) Table 2"] == 20
    assert counts["open_clip docs/openclip_results.csv (mlfoundations/open_clip)"] == 15
    tpt_sketch = published[(published.method == "tpt") & (published.backbone == "clip-vit-b16")
                           & (published.split == "imagenet-sketch")]
    assert tpt_sketch.value.item() == 47.94
    tda = published[published.source == "TDA (Karmanov et al. CVPR 2024) kdiAAA/TDA README.md"]
    assert len(tda) == 15 and tda.verified.all() and set(tda.method) == {"tda"}
    assert tda[tda.split == "imagenet-r"].value.item() == 62.58 and tda[tda.split == "eurosat"].value.item() == 42.11
    tent = published[(published.method == "tent") & (published.backbone == "wrn-28-10") & (published.split == "mean")]
    assert (tent.metric.item(), tent.value.item()) == ("error", 18.6)


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "published.csv"
    path.write_text(",".join(COLUMNS) + "\napm,x,imagenet-c,mean,top1,high,src,yes,\n")
    with pytest.raises(ValueError, match=r"published\.csv: value must be a number.*line 2"):
        load_published(path)
    path.write_text("method,value\napm,1\n")
    with pytest.raises(ValueError, match="columns"):
        load_published(path)
