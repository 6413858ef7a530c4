"""Tables from fixture run folders: golden content, order independence, formats, seeds, published rows."""
from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tta_bench.report import build_tables, load_published, load_runs, metric_of, render, render_tables, table_command

from tta_bench.vocabulary import CORRUPTIONS

from .conftest import fixture_summaries, make_summary, published_row, split, write_runs

GOLDEN = Path(__file__).parent / "golden"


def _tables(summaries=None):
    return build_tables(summaries if summaries is not None else fixture_summaries(), published=published_row())


def test_golden_markdown(runs_root):
    tables = build_tables(load_runs([runs_root]), published=published_row())
    assert list(tables) == ["imagenet-c"]
    assert render(tables["imagenet-c"], "md") == (GOLDEN / "imagenet-c_top1.md").read_text(encoding="utf-8")


def test_rows_and_markers():
    table = _tables()["imagenet-c"]
    labels = list(table.index)
    assert labels[labels.index("apm (clip-vit-b16)") + 1:][:2] == ["  teacher (ceiling)", "  agreement"]
    assert "source (effnet-lite0) [generated, limit-50]" in labels
    assert table.loc["tent (resnet50) (n=2 seeds)", "gaussian_noise-5"] == "41.0 ± 1.4"  # sample std of 40, 42
    assert labels[-1] == "apm (clip-vit-l14) [published: APM Table 2]"
    assert table.loc[labels[-1], "mean"] == "50.3"
    assert table.loc[labels[-1], "fog-5"] == ""  # published numbers never merge into measured cells


def test_column_order_by_severity_then_standard_corruption_order():
    columns = list(_tables()["imagenet-c"].columns)
    assert columns == ["gaussian_noise-3", "fog-3", "gaussian_noise-5", "defocus_blur-5", "fog-5",
                       "mean-3", "mean-5", "mean", "mean over", "n"]


def test_single_severity_table_has_no_per_severity_means():
    table = _tables(fixture_summaries()[1:])["imagenet-c"]
    assert list(table.columns) == ["gaussian_noise-5", "defocus_blur-5", "fog-5", "mean", "mean over", "n"]


@pytest.mark.parametrize("fmt", ["md", "csv", "latex"])
def test_byte_identical_whatever_the_input_order(fmt):
    expected = render_tables(_tables(), fmt, "top1")
    rng = random.Random(0)
    for _ in range(5):
        shuffled = fixture_summaries()
        rng.shuffle(shuffled)
        assert render_tables(_tables(shuffled), fmt, "top1") == expected


def test_latex_shape():
    summaries = fixture_summaries()
    summaries[0]["method"] = "my_method&co"
    text = render(_tables(summaries)["imagenet-c"], "latex")
    assert text.startswith("\\begin{tabular}{l" + "r" * 10 + "}\n")
    assert text.rstrip().endswith("\\end{tabular}")
    assert text.count("{") == text.count("}")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "my\\_method\\&co" in text and "gauss-5" in text and "gaussian" not in text  # short headers
    assert "$\\pm$" in text and "\\quad teacher (ceiling)" in text
    body = [line for line in text.splitlines() if line.endswith("\\\\")]
    assert {line.count(" & ") for line in body} == {10}  # label + 10 columns on every row


def test_csv_round_trips_via_pandas():
    table = _tables()["imagenet-c"]
    back = pd.read_csv(io.StringIO(render(table, "csv")), index_col=0, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_metric_of_reads_any_metric_and_derives_error():
    summary = make_summary("r", "source", None, {"fog-5": split(20.0, ece=7.5)})
    assert metric_of(summary, "fog-5", "top5") == 40.0
    assert metric_of(summary, "fog-5", "ece") == 7.5
    assert metric_of(summary, "fog-5", "error") == 80.0
    assert metric_of(summary, "fog-5", "nll") is None
    assert metric_of(summary, "snow-5", "top1") is None


def test_table_of_another_metric_keeps_only_runs_that_have_it():
    summaries = fixture_summaries()
    summaries[2]["splits"]["fog-5"]["ece"] = 3.25
    tables = build_tables(summaries, metric="ece")
    assert list(tables["imagenet-c"].index) == ["tent (resnet50)"]
    assert tables["imagenet-c"].loc["tent (resnet50)", "fog-5"] == "3.2"  # fixed 1-decimal format


def test_runs_differing_in_more_than_seed_are_separate_labelled_rows():
    summaries = fixture_summaries()
    summaries[3]["config"]["method_options"] = summaries[3]["method_options"] = {"lr": 0.01}
    labels = list(_tables(summaries)["imagenet-c"].index)
    assert "tent (resnet50), lr 0.001" in labels  # one seed each: no n
    assert "tent (resnet50), lr 0.01" in labels


def test_same_config_and_seed_twice_is_an_error():
    summaries = fixture_summaries()
    summaries[3]["seed"] = summaries[3]["config"]["seed"] = 0
    with pytest.raises(ValueError, match="tent-seed0 and tent-seed1 both give split"):
        _tables(summaries)


def test_imagenet_family_shares_one_table_with_ood_mean():
    summaries = [make_summary(f"zs-{suite}", "zeroshot", "clip-vit-b16", {suite: split(value)}, suite=suite)
                 for suite, value in [("imagenet", 70.0), ("imagenet-a", 50.0), ("imagenet-v2", 60.0),
                                      ("imagenet-r", 80.0), ("imagenet-sketch", 50.0)]]
    tables = build_tables(summaries, published=load_published())
    table = tables["imagenet-family"]
    assert list(table.columns) == ["imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch",
                                   "mean", "OOD mean", "n"]
    assert table.loc["zeroshot (clip-vit-b16)"].tolist() == ["70.0", "50.0", "60.0", "80.0", "50.0", "62.0", "60.0",
                                                             "250"]
    tpt = table.loc["tpt (clip-vit-b16) [published, unverified: TPT (Shu et al. NeurIPS 2022) Table 1]"]
    assert (tpt["mean"], tpt["OOD mean"]) == ("62.4", "60.8")  # TPT's own Average / OOD Average
    assert "apm (unknown) [published, unverified: aggregator sites]" in table.index
    assert not any("cifar" in label or "Table 2]" in label for label in table.index)


def test_table_command_reads_folders(runs_root):
    text = table_command([str(runs_root)], "md", published=True, metric="top1")
    assert text.startswith("## imagenet-c (top1)\n\n| method")
    assert ("apm (clip-vit-l14) [published, unverified: NeurIPS 2024 poster summary and aggregator pages quoting APM "
            "(Modi & Rawat NeurIPS 2024) Table 2]") in text
    csv_text = table_command([str(runs_root)], "csv", published=False, metric="top1")
    assert csv_text.splitlines()[0].startswith("method,table,")
    with pytest.raises(ValueError, match="no run has metric 'nll'"):
        table_command([str(runs_root)], "md", published=False, metric="nll")
    with pytest.raises(ValueError, match="unknown table format"):
        table_command([str(runs_root)], "html", published=False, metric="top1")


def test_report_imports_without_torch():
    code = "import sys, tta_bench.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_measured_row_shows_the_samples_behind_it():
    table = _tables()["imagenet-c"]
    assert table.loc["apm (clip-vit-b16)", "n"] == "150"  # 3 splits x 50
    assert table.loc["tent (resnet50) (n=2 seeds)", "n"] == "150"  # per seed
    assert table.loc["source (effnet-lite0) [generated, limit-50]", "n"] == "250"
    assert table.loc["  agreement", "n"] == "" and table.loc["apm (clip-vit-l14) [published: APM Table 2]", "n"] == ""


def test_a_mean_over_fewer_domains_or_other_splits_than_its_neighbours_says_so():
    table = _tables()["imagenet-c"]
    assert table.loc["apm (clip-vit-b16)", "mean over"] == "3 of 15"
    assert table.loc["tent (resnet50) (n=2 seeds)", "mean over"] == "3 of 15"
    assert table.loc["source (effnet-lite0) [generated, limit-50]", "mean over"] == "5 of 30 (other splits)"
    assert table.loc["apm (clip-vit-l14) [published: APM Table 2]", "mean over"] == "published"


def test_rows_over_all_15_corruptions_need_no_mean_over_column():
    full = {f"{c}-5": split(float(k)) for k, c in enumerate(CORRUPTIONS)}
    table = build_tables([make_summary("all", "source", "effnet-lite0", full)])["imagenet-c"]
    assert "mean over" not in table.columns and table.loc["source (effnet-lite0)", "n"] == "750"
    fewer = make_summary("some", "tent", "effnet-lite0", dict(list(full.items())[:4]))
    table = build_tables([make_summary("all", "source", "effnet-lite0", full), fewer])["imagenet-c"]
    assert table.loc["tent (effnet-lite0)", "mean over"] == "4 of 15 (other splits)"
    assert table.loc["source (effnet-lite0)", "mean over"] == ""


def test_the_fine_grained_suites_share_one_table_in_tpt_table_2s_order():
    summaries = [make_summary(f"zs-{suite}", "zeroshot", "clip-vit-b16", {suite: split(value)}, suite=suite)
                 for suite, value in [("eurosat", 40.0), ("flowers102", 60.0), ("dtd", 50.0)]]
    summaries.append(make_summary("zs-hub", "zeroshot", "clip-vit-b16", {"flowers102@official": split(55.0)},
                                  suite="flowers102"))
    tables = build_tables(summaries, published=load_published())
    table = tables["fine-grained"]
    assert list(table.columns) == ["flowers102", "dtd", "pets", "cars", "ucf101", "caltech101", "food101", "sun397",
                                   "aircraft", "eurosat", "mean", "n"]
    assert table.loc["zeroshot (clip-vit-b16)", "flowers102"] == "60.0"
    tpt = table.loc["tpt (clip-vit-b16) [published, unverified: TPT (Shu et al. NeurIPS 2022) Table 2]"]
    assert tpt["mean"] == "65.1"  # TPT's own Average over the ten
    assert "flowers102@official" not in table.columns and "flowers102@official" in tables["flowers102"].columns


def test_clip_test_time_methods_sit_beside_tpt_and_zero_shot(tmp_path):
    """TDA and ZERO end to end on tiny-clip (a real engine run each, on an ImageNet-R folder of 4 images), in the
    ImageNet-family table beside TPT and zero-shot CLIP, with the published TDA and TPT rows of the same table."""
    from tests.conftest import write_images
    from tta_bench import engine
    from tta_bench.config import RunConfig

    root = tmp_path / "imagenet-r"
    write_images(root, {"n01443537": 2, "n01484850": 2}, size=80)
    summaries = []
    for method, options in (("source", {}), ("tpt", {"n_views": 8}), ("tda", {"n_views": 8}), ("zero", {"n_views": 8})):
        cfg = RunConfig(suite="imagenet-r", data_root=str(root), allow_partial=True, teacher="tiny-clip",
                        method=method, method_options=options, num_workers=0, device="cpu", batch_size=4,
                        out=str(tmp_path / method))
        summaries.append(engine.run(cfg, progress=False, log=lambda *_: None))
    assert all(s["splits"]["imagenet-r"]["n"] == 4 for s in summaries)
    tda = summaries[2]
    assert tda["defaults"]["family"] == "imagenet-r" and tda["method_options"]["pos_beta"] == 8.0  # configs/imagenet_r
    assert tda["defaults"]["overridden"] == {"n_views": {"table": 64, "used": 8}}
    table = build_tables(summaries, published=load_published())["imagenet-family"]
    labels = list(table.index)
    for method in ("source", "tpt", "zero"):
        assert f"{method} (tiny-clip) [partial]" in labels
    assert "tda (tiny-clip) [partial, short domains: 4 of 30,000]" in labels  # online: its caches fill over a domain
    assert any(label.startswith("tda (clip-rn50) [published: TDA") for label in labels)
    assert any(label.startswith("tpt (clip-rn50) [published: TPT") for label in labels)


def test_runs_differing_only_by_data_root_are_told_apart_in_the_label():
    a, b = fixture_summaries()[2], fixture_summaries()[2]
    b["run_name"] = "tent-seed0-other-copy"
    a["config"]["data_root"], b["config"]["data_root"] = "/data/ImageNet-C", "/scratch/ImageNet-C"
    b["data"]["root"] = "/scratch/ImageNet-C"
    b["splits"]["fog-5"]["top1"] = 49.0
    table = build_tables([a, b])["imagenet-c"]
    assert list(table.index) == ["tent (resnet50), data /data/ImageNet-C", "tent (resnet50), data /scratch/ImageNet-C"]
    assert table["fog-5"].tolist() == ["50.0", "49.0"]


def test_runs_of_other_suites_with_their_own_data_roots_still_share_a_row():
    summaries = [make_summary(f"zs-{suite}", "zeroshot", "clip", {suite: split(value)}, suite=suite)
                 for suite, value in [("imagenet-a", 50.0), ("imagenet-r", 80.0)]]
    for summary in summaries:
        summary["config"]["data_root"] = f"/data/{summary['suite']}"
    table = build_tables(summaries)["imagenet-family"]
    assert list(table.index) == ["zeroshot (clip)"] and table.loc["zeroshot (clip)", "imagenet-r"] == "80.0"


def test_runs_differing_only_by_data_source_are_told_apart():
    a, b = fixture_summaries()[2], fixture_summaries()[2]
    a["source"] = a["config"]["source"] = "hub"
    b["run_name"], b["source"], b["config"]["source"] = "tent-published", "published", "published"
    labels = list(build_tables([a, b])["imagenet-c"].index)
    assert labels == ["tent (resnet50)", "tent (resnet50) [hub]"]  # the published copy is the unmarked default


def test_latex_tables_carry_a_caption_with_suite_teacher_protocol_and_n(runs_root):
    text = table_command([str(runs_root)], "latex", published=False, metric="top1")
    assert text.count("\\begin{table}") == 1 and "\\label{tab:imagenet-c-top1}" in text
    caption = next(line for line in text.splitlines() if line.startswith("\\caption{"))
    assert caption == ("\\caption{imagenet-c: top-1 accuracy (\\%); teachers clip-vit-b16, effnet-lite0, resnet50; "
                       "protocol reset\\_each\\_shift; n = 50 samples per split.}")
    header = next(line for line in text.splitlines() if line.startswith("method & "))
    assert header == "method & gauss-3 & fog-3 & gauss-5 & defoc-5 & fog-5 & mean-3 & mean-5 & mean & mean over & n \\\\"


def test_one_severity_latex_headers_are_the_papers_short_names():
    from tta_bench.report.tables import captions, short_headers

    summaries = fixture_summaries()[1:2]
    assert short_headers(["gaussian_noise-5", "impulse_noise-5", "jpeg_compression-5", "mean"]) == [
        "gauss", "impul", "jpeg", "mean"]
    assert captions(summaries, "top1")["imagenet-c"] == ("imagenet-c: top-1 accuracy (%) at severity 5; teacher "
                                                         "clip-vit-b16; protocol reset_each_shift; n = 50 samples per "
                                                         "split.")


def test_a_run_whose_top1_is_not_a_number_is_left_out_with_a_warning_and_not_counted(runs_root, tmp_path, capsys):
    """Three seeds of tent, one with top-1 NaN on a split and one with a string: the table shows one seed and says
    that it left out the other two, naming the split and the value."""
    from tta_bench.cli import main

    summaries = fixture_summaries()[2:]
    third = make_summary("tent-seed2", "tent", "resnet50", {"gaussian_noise-5": split(41.0), "defocus_blur-5":
                         split(35.0), "fog-5": split(50.0)}, seed=2, options={"lr": 0.001})
    summaries[0]["splits"]["fog-5"]["top1"] = float("nan")
    summaries[1]["splits"]["defocus_blur-5"]["top1"] = "high"
    write_runs(tmp_path / "runs", [*summaries, third])
    assert main(["table", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "| tent (resnet50) " in out and "seeds" not in out  # one seed left: no "n=3 seeds"
    assert err.splitlines() == ["warning: left out run tent-seed0: top1 of fog-5 is nan, not a number",
                                "warning: left out run tent-seed1: top1 of defocus_blur-5 is 'high', not a number"]
    with pytest.warns(UserWarning, match="left out run tent-seed0"):
        assert list(build_tables([summaries[0], third])["imagenet-c"].index) == ["tent (resnet50)"]


@pytest.mark.parametrize("runs", [{}, [{"a": 1}], [fixture_summaries()[0], {"suite": "x"}]])
def test_the_api_table_of_things_that_are_not_summaries_is_a_one_line_error(runs):
    from tta_bench.api import table

    with pytest.raises(ValueError, match=r"^summary \d of \d is not a run summary: ") as caught:
        table(runs)
    assert "\n" not in str(caught.value)


def test_a_mixed_folder_labels_rows_in_words_not_configuration_dumps():
    """Two bn_adapt rows that differ in batch size (one given, one the method's default), one in lr: each label
    says the field that tells it from its neighbours, in words."""
    rows = []
    for name, batch, options in (("bn64", 64, {}), ("bn200", None, {}), ("tent-lr", None, {"lr": 0.01})):
        method = "tent" if name.startswith("tent") else "bn_adapt"
        summary = make_summary(name, method, "resnet50", {"fog-5": split(40.0)}, options=options)
        summary["config"]["batch_size"] = batch
        if name == "bn200":
            summary["defaults"] = {"applied": {"batch_size": 200}}  # BN adaptation's CIFAR default
        rows.append(summary)
    rows.append(fixture_summaries()[2])  # tent, lr 0.001
    labels = list(build_tables(rows)["imagenet-c"].index)
    assert labels == ["bn_adapt (resnet50), batch 200", "bn_adapt (resnet50), batch 64", "tent (resnet50), lr 0.001",
                      "tent (resnet50), lr 0.01"]
    for fmt in ("md", "csv", "latex"):
        text = render_tables(build_tables(rows), fmt, "top1")
        assert "=" not in text.replace("\\label", "") and "{batch" not in text and "method_options" not in text


def test_failed_samples_are_shown_in_a_column_of_their_own_where_any_failed():
    summaries = fixture_summaries()
    summaries[2]["splits"]["fog-5"]["failed"] = 7
    summaries[3]["splits"]["fog-5"]["failed"] = 3
    table = build_tables(summaries)["imagenet-c"]
    assert table.loc["tent (resnet50) (n=2 seeds)", "failed"] == "3-7"  # per seed; still one row
    assert table.loc["apm (clip-vit-b16)", "failed"] == ""
    assert "failed" not in build_tables(fixture_summaries())["imagenet-c"].columns
