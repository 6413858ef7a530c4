"""Plots from fixture runs: files written in both formats, and clear errors when nothing fits."""
from __future__ import annotations

import pytest

from tta_bench.report import plot_command
from tta_bench.report.plots import plot_corruption_bars, plot_cost, plot_severity

from .conftest import fixture_summaries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_figures(paths, stems):
    assert sorted(path.name for path in paths) == sorted(f"{stem}.{ext}" for stem in stems for ext in ("png", "svg"))
    for path in paths:
        data = path.read_bytes()
        assert data, path
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC)
        else:
            assert b"<svg" in data


def test_each_plot_writes_png_and_svg(tmp_path):
    summaries = fixture_summaries()
    _assert_figures(plot_severity(summaries, tmp_path), ["severity_imagenet-c"])
    _assert_figures(plot_corruption_bars(summaries, tmp_path), ["corruptions_sev5_imagenet-c"])
    _assert_figures(plot_corruption_bars(summaries, tmp_path, severity=3), ["corruptions_sev3_imagenet-c"])
    _assert_figures(plot_cost(summaries, tmp_path), ["cost_imagenet-c"])


def test_svg_is_reproducible(tmp_path):
    first = plot_cost(fixture_summaries(), tmp_path / "a")
    second = plot_cost(fixture_summaries()[::-1], tmp_path / "b")
    svg = [[path.read_bytes() for path in paths if path.suffix == ".svg"] for paths in (first, second)]
    assert svg[0] == svg[1]


def test_nothing_to_show_raises(tmp_path):
    severity_five_only = fixture_summaries()[1:]
    with pytest.raises(ValueError, match="no run has more than one severity"):
        plot_severity(severity_five_only, tmp_path)
    with pytest.raises(ValueError, match="no run has a corruption split at severity 2"):
        plot_corruption_bars(severity_five_only, tmp_path, severity=2)
    for summary in severity_five_only:
        del summary["cost"]
    with pytest.raises(ValueError, match="no run has cost.seconds_per_sample"):
        plot_cost(severity_five_only, tmp_path)
    assert not list(tmp_path.iterdir())


def test_plot_command_draws_what_fits(runs_root, tmp_path):
    paths = plot_command([str(runs_root)], tmp_path / "plots")
    _assert_figures(paths, ["severity_imagenet-c", "corruptions_sev5_imagenet-c", "cost_imagenet-c"])
