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


def test_apm_imagenet_c_is_verified(published):
    row = published[(published.method == "apm") & (published.suite == "imagenet-c")]
    assert len(row) == 1
    assert (row.split.item(), row.metric.item(), row.value.item(), row.verified.item()) == ("mean", "top1", 50.3, True)
    dtd = published[(published.method == "apm") & (published.suite == "dtd")]
    assert dtd.value.item() == 49.1 and dtd.verified.item()


def test_aggregator_and_ttt_mae_rows_are_unverified(published):
    aggregator = published[published.source == "aggregator sites"]
    assert len(aggregator) == 5 and not aggregator.verified.any()
    assert (aggregator.note != "").all()
    ttt = published[published.source.str.startswith("TTT-MAE")]
    assert len(ttt) == 30 and not ttt.verified.any()
    assert set(ttt.split) == {f"{c}-5" for c in CORRUPTIONS}


def test_blocks_are_complete(published):
    counts = published.groupby("source").size().to_dict()
    assert counts["TPT (Shu et al. NeurIPS 2022) Table 1"] == 35
    assert counts["TPT (Shu et al. NeurIPS 2022) Table 2"] == 20
    assert counts["open_clip zero-shot results table"] == 15
    tpt_sketch = published[(published.method == "tpt") & (published.backbone == "clip-vit-b16")
                           & (published.split == "imagenet-sketch")]
    assert tpt_sketch.value.item() == 47.94
    tda = published[published.source == "TDA (Karmanov et al. CVPR 2024) kdiAAA/TDA README.md"]
    assert len(tda) == 15 and tda.verified.all() and set(tda.method) == {"tda"}
    assert tda[tda.split == "imagenet-r"].value.item() == 62.58 and tda[tda.split == "eurosat"].value.item() == 42.11
    tent = published[(published.method == "tent") & (published.backbone == "wrn-28-10")]
    assert (tent.metric.item(), tent.value.item()) == ("error", 18.6)


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "published.csv"
    path.write_text(",".join(COLUMNS) + "\napm,x,imagenet-c,mean,top1,high,src,yes,\n")
    with pytest.raises(ValueError, match=r"published\.csv: value must be a number.*line 2"):
        load_published(path)
    path.write_text("method,value\napm,1\n")
    with pytest.raises(ValueError, match="columns"):
        load_published(path)
