"""Islands of agreement: the PNG the `islands` command writes, and the PCA colouring behind it."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import image_array
from tta_bench.cli import main
from tta_bench.islands import COLOUR_NOTE, default_steps, layout, pca_colours


def test_islands_command_writes_the_png(tmp_path: Path, capsys) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(image_array(0, size=48)).save(source)
    out = tmp_path / "figs" / "islands.png"
    code = main(["islands", "--image", str(source), "--teacher", "tiny", "--steps", "6", "--at", "0,3,6",
                 "--panel", "40", "--device", "cpu", "--out", str(out)])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    title = "Islands of agreement: an APM student trained on photo.png (teacher tiny)"
    top, height = layout(40, 4, title, ["input", "step 0", "step 3", "step 6"])
    with Image.open(out) as png:
        assert png.size == (40 * 4, height)  # the input and three step counts
        pixels = np.asarray(png.convert("RGB"))
    panels = [pixels[top:top + 40, 40 * i:40 * (i + 1)] for i in range(4)]
    assert all(len(np.unique(p.reshape(-1, 3), axis=0)) > 1 for p in panels)  # no blank panel
    assert (pixels[:top] < 128).any() and (pixels[top + 40:] < 128).any()  # a title above, captions and a note below


def test_pca_colours_separate_groups_of_equal_features() -> None:
    grid = torch.zeros(4, 4, 16)
    grid[:, 2:] = torch.randn(16, generator=torch.Generator().manual_seed(0))  # right half: another feature
    colours = pca_colours(grid)
    assert colours.shape == (4, 4, 3) and colours.dtype == np.uint8
    left, right = colours[:, :2].reshape(-1, 3), colours[:, 2:].reshape(-1, 3)
    assert len(np.unique(left, axis=0)) == 1 and len(np.unique(right, axis=0)) == 1
    assert not np.array_equal(left[0], right[0])
    assert colours.max() == 255 and colours.min() == 0


def test_default_steps() -> None:
    assert default_steps(80) == [0, 8, 26, 80]
    assert default_steps(2) == [0, 1, 2]


def test_a_teacher_with_a_feature_map_adds_its_panel_and_the_grid_is_settable(tmp_path: Path, capsys) -> None:
    """EfficientNet-Lite0 has a 7x7 map before pooling: the student fits it (dense term) and the figure shows it
    beside the student's grids; --opt grid/patch change the student's resolution."""
    source = tmp_path / "photo.png"
    Image.fromarray(image_array(1, size=64)).save(source)
    out = tmp_path / "islands.png"
    assert main(["islands", "--image", str(source), "--teacher", "effnet-lite0", "--steps", "2", "--at", "0,2",
                 "--opt", "grid=6", "--opt", "patch=4", "--panel", "36", "--device", "cpu", "--out", str(out)]) == 0
    title = "Islands of agreement: an APM student trained on photo.png (teacher effnet-lite0)"
    top, height = layout(36, 4, title, ["input", "step 0", "step 2", "teacher map"])
    with Image.open(out) as png:
        assert png.size == (36 * 4, height)  # input, steps 0 and 2, the teacher map
        pixels = np.asarray(png.convert("RGB"))
    teacher_panel = pixels[top:top + 36, 36 * 3:]
    assert len(np.unique(teacher_panel.reshape(-1, 3), axis=0)) > 1
    assert main(["islands", "--image", str(source), "--teacher", "tiny", "--opt", "grid=1", "--device", "cpu",
                 "--out", str(out)]) != 0
    assert "grid must be 0 or >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"), ("empty", r"is empty \(0 bytes\)"), ("folder", "is a folder"),
    ("not an image", "corrupt or truncated image .*cannot identify image file"),
    ("truncated", "corrupt or truncated image"),
])
def test_an_image_that_cannot_be_read_is_one_line(tmp_path: Path, capsys, kind: str, message: str) -> None:
    path = tmp_path / "photo.jpg"
    if kind == "empty":
        path.touch()
    elif kind == "folder":
        path.mkdir()
    elif kind == "not an image":
        path.write_text("hello\n")
    elif kind == "truncated":
        Image.fromarray(image_array(0, size=48)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    code = main(["islands", "--image", str(path), "--teacher", "tiny", "--steps", "2", "--device", "cpu", "--out",
                 str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out.png").exists()


def test_the_figure_is_titled_says_what_colours_mean_and_goes_under_results_by_default(tmp_path, monkeypatch):
    """Readable text (not the 11-pixel bitmap font), a title and a note on the colours; the default --out is
    results/plots/islands.png, not the working directory."""
    from tta_bench.islands import _font, render

    grids = {0: torch.randn(4, 4, 8, generator=torch.Generator().manual_seed(0))}
    figure = render(torch.rand(1, 3, 32, 32), grids, 224, "Islands of agreement: test")
    top, height = layout(224, 2, "Islands of agreement: test", ["input", "step 0"])
    assert figure.size == (448, height) and top >= 20 and _font(224).size >= 16
    assert "PCA" in COLOUR_NOTE and "island" in COLOUR_NOTE
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "photo.png"
    Image.fromarray(image_array(2, size=48)).save(source)
    assert main(["islands", "--image", str(source), "--teacher", "tiny", "--steps", "2", "--panel", "40",
                 "--device", "cpu"]) == 0
    assert (tmp_path / "results" / "plots" / "islands.png").is_file() and not (tmp_path / "islands.png").exists()
