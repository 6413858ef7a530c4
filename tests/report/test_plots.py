"""Plots from fixture runs: files written in both formats, and clear errors when nothing fits."""
from __future__ import annotations

import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer

from tta_bench.report import plot_command
from tta_bench.report.plots import plot_corruption_bars, plot_cost, plot_severity

from .conftest import fixture_summaries, make_summary, split

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


def _with_host(summaries, cpu="AMD EPYC 7B13", threads=2, gpu=None):
    for summary in summaries:
        summary["provenance"] = {"host": {"cpu": cpu, "threads": threads, "gpu": gpu}}
    return summaries


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_cost_plot_has_a_legend_the_device_and_no_overlapping_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tta_bench.report.plots import CostPoint, _cost_figure

    points = [("apm (clip)", 2.5, 31.3), ("source (effnet)", 0.01, 23.0), ("tent (resnet50) seed 0", 0.05, 41.7),
              ("tent (resnet50) seed 1", 0.05, 43.0)]
    figure = _cost_figure("imagenet-c", [CostPoint(*point) for point in points], "AMD EPYC 7B13, 2 threads")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    (ax,) = figure.axes
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["apm (clip)", "source (effnet)", "tent (resnet50) seed 0",
                                                         "tent (resnet50) seed 1"]
    assert "on AMD EPYC 7B13, 2 threads" in ax.get_xlabel()
    assert not ax.texts  # no labels placed beside points (they overlapped where runs cost the same)
    boxes = [ax.get_window_extent(renderer), legend.get_window_extent(renderer), ax.xaxis.label.get_window_extent(renderer)]
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    ticks = [t for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert len(ticks) >= 3


def test_cost_plot_of_one_run_has_a_readable_axis(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tta_bench.report.plots import CostPoint, _cost_figure

    figure = _cost_figure("demo", [CostPoint("source (effnet-lite0)", 0.02, 23.0)], "AMD EPYC, 2 threads")
    figure.draw(FigureCanvasAgg(figure).get_renderer())
    (ax,) = figure.axes
    low, high = ax.get_xlim()
    assert low < 0.02 < high and high / low >= 10  # a span, not a collapsed axis around one point
    assert ax.get_ylim()[0] < 23.0 < ax.get_ylim()[1] and ax.get_ylim()[1] - ax.get_ylim()[0] >= 10
    labelled = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
    assert len(labelled) >= 2


def test_cost_plot_names_the_device_of_each_run_when_they_differ(tmp_path):
    summaries = fixture_summaries()[:2]
    _with_host(summaries[:1])
    _with_host(summaries[1:], gpu="NVIDIA H100 80GB HBM3")
    (_png, svg) = plot_cost(summaries, tmp_path)
    svg_text = svg.read_text()
    assert "NVIDIA H100 80GB HBM3" in svg_text and "AMD EPYC 7B13, 2 threads" in svg_text
    assert "device per run in the legend" in svg_text


def _figures(monkeypatch) -> list:
    """The figures the plot functions build, captured instead of saved."""
    from tta_bench.report import plots

    built: list = []
    monkeypatch.setattr(plots, "_save", lambda figure, out_dir, stem: built.append(figure) or [out_dir / stem])
    return built


def test_the_bars_show_each_rows_top1_per_corruption(monkeypatch, tmp_path):
    built = _figures(monkeypatch)
    plot_corruption_bars(fixture_summaries(), tmp_path)
    (ax,) = built[0].axes
    corruptions = [t.get_text() for t in ax.get_xticklabels()]
    assert corruptions == ["gaussian_noise", "defocus_blur", "fog"]  # the ImageNet-C order
    heights = {c.get_label(): [bar.get_height() for bar in c] for c in ax.containers if isinstance(c, BarContainer)}
    assert heights == {"apm": [24.0, 30.0, 40.0], "source": [10.0, 15.0, 20.0],
                       "tent": [41.0, 35.5, 50.5]}  # the mean of its two seeds
    assert ax.get_ylabel() == "top-1 (%)" and [t.get_text() for t in ax.get_legend().get_texts()] == list(heights)


def test_the_severity_lines_join_a_rows_top1_at_each_severity(monkeypatch, tmp_path):
    built = _figures(monkeypatch)
    plot_severity(fixture_summaries(), tmp_path)
    shown = {ax.get_title(): {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()))
                              for c in ax.containers} for ax in built[0].axes if ax.get_visible()}
    # only the source run has two severities, of gaussian_noise and fog
    assert shown == {"gaussian_noise": {"source": ([3, 5], [30.0, 10.0])}, "fog": {"source": ([3, 5], [40.0, 20.0])}}
    assert all(ax.get_xlabel() == "severity" and ax.get_ylabel() == "top-1 (%)" for ax in built[0].axes
               if ax.get_visible())


def test_cost_plot_legend_fits_the_figure_with_long_run_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tta_bench.report.plots import CostPoint, _cost_figure

    labels = [f"{m} (effnet-lite0) [generated from 500 images, limit-200, cpu preset]" for m in
              ("apm", "bn_adapt", "cotta", "eata", "memo", "source", "tent")]
    figure = _cost_figure("imagenet-c", [CostPoint(label, 0.05 * (k + 1), 20.0 + k) for k, label in enumerate(labels)],
                          "AMD EPYC, 1 thread")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    (legend,) = figure.legends
    box, page = legend.get_window_extent(renderer), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0  # nothing clipped at the edges
    assert [t.get_text() for t in legend.get_texts()] == sorted(labels)


def _bn_adapt_at(batch: int, top1: float, name: str) -> dict:
    summary = make_summary(name, "bn_adapt", "resnet50", {"gaussian_noise-5": split(top1), "fog-5": split(top1 + 5)})
    summary["config"]["batch_size"] = batch
    return summary


def test_every_figure_gives_a_method_the_same_colour_and_legends_name_methods(monkeypatch, tmp_path):
    """Two rows of one method differ in batch size: the legend says so in words; the method's colour is the same in
    the bars and the cost plot (and for a method no table names)."""
    from tta_bench.report.plots import METHOD_COLORS, method_color

    built = _figures(monkeypatch)
    summaries = fixture_summaries() + [_bn_adapt_at(64, 30.0, "bn64"), _bn_adapt_at(200, 33.0, "bn200")]
    plot_corruption_bars(summaries, tmp_path)
    plot_cost(summaries, tmp_path)
    bars, cost = built
    (ax,) = bars.axes
    colours = {c.get_label(): c.patches[0].get_facecolor() for c in ax.containers if isinstance(c, BarContainer)}
    assert set(colours) == {"apm", "bn_adapt, batch 200", "bn_adapt, batch 64", "source", "tent"}
    assert colours["source"] == to_rgba(METHOD_COLORS["source"]) == colours["source"]
    assert colours["bn_adapt, batch 64"] == colours["bn_adapt, batch 200"] == to_rgba(METHOD_COLORS["bn_adapt"])
    (legend,) = cost.legends
    handles = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    assert to_rgba(handles["source"].get_color()) == colours["source"]
    assert not any("{" in label or "=" in label for label in handles)
    assert method_color("my_method") == method_color("my_method")
    assert "effnet" not in " ".join(handles)  # teachers and markers shared by all rows go to the title, not here


def test_zero_is_drawn_apart_from_a_missing_result(monkeypatch, tmp_path):
    built = _figures(monkeypatch)
    summaries = [make_summary("a", "tent", "resnet50", {"gaussian_noise-5": split(0.0), "fog-5": split(40.0)}),
                 make_summary("b", "source", "resnet50", {"fog-5": split(20.0), "defocus_blur-5": split(10.0)})]
    plot_corruption_bars(summaries, tmp_path)
    (ax,) = built[0].axes
    texts = [(t.get_text(), round(t.get_position()[0], 2)) for t in ax.texts]
    assert [text for text, _ in texts].count("0") == 1 and [text for text, _ in texts].count("n/a") == 2
    zero_line = [line for line in ax.lines if list(line.get_ydata()) == [0, 0]]
    assert len(zero_line) == 1 and not zero_line[0].get_clip_on()  # visible at the axis, not a missing bar


def test_severity_markers_at_zero_are_not_clipped(monkeypatch, tmp_path):
    built = _figures(monkeypatch)
    plot_severity([make_summary("a", "tent", "resnet50", {"fog-3": split(10.0), "fog-5": split(0.0)})], tmp_path)
    (container,) = next(ax for ax in built[0].axes if ax.get_visible()).containers
    assert not container.lines[0].get_clip_on() and list(container.lines[0].get_ydata()) == [10.0, 0.0]


def test_seeds_are_one_bar_with_error_bars_intervals_where_predictions_exist(tmp_path):
    from .conftest import write_run
    from tta_bench.report import plot_command

    for seed in (0, 1):
        write_run(tmp_path / "runs", f"src{seed}", "source", {"fog-5": [k % 3 == seed for k in range(300)]},
                  seed=seed)
    figures = _figures_of_command(tmp_path, plot_command)
    (ax,) = figures[0].axes
    (bar,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bar.patches) == 1 and bar.errorbar is not None
    assert ax.get_legend().get_title().get_text() == "error bars: 95% interval"


def _figures_of_command(tmp_path, command) -> list:
    import tta_bench.report.plots as plots

    built: list = []
    original = plots._save
    plots._save = lambda figure, out_dir, stem: built.append(figure) or [out_dir / stem]
    try:
        command([str(tmp_path / "runs")], tmp_path / "plots")
    finally:
        plots._save = original
    return built


def test_plot_out_on_a_file_or_an_unwritable_folder_is_one_line(runs_root, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    from tta_bench.cli import main

    target = tmp_path / "file.png"
    target.write_text("x")
    assert main(["plot", str(runs_root), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {target}: is a file, not a folder for the figures\n"
    assert main(["plot", str(runs_root), "--out", str(target / "sub")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {target / 'sub'}: cannot make the folder")

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Figure, "savefig", refuse)  # a read-only folder (root writes into chmod 555 folders)
    assert main(["plot", str(runs_root), "--out", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and err.startswith("error: cannot write ")
