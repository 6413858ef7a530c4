"""Islands of agreement (APM paper, Figures 3 and 5): train one APM student on one image and show its feature grid,
coloured by a 3-component PCA of the per-location features, at a few step counts beside the input.

Locations never exchange information inside the student, so regions of one colour ("islands") are locations whose
features the training made agree: the paper reads them as the parts of the image the student groups together.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .data.images import open_rgb
from .errors import UserError
from .methods.apm import APM, fit, student_config, student_input, teacher_targets
from .models.apm_student import APMStudent
from .teachers.base import Teacher

BACKGROUND, INK = (255, 255, 255), (0, 0, 0)
PAD = 6
COLOUR_NOTE = ("Colours: each panel's own PCA of its per-location features (the student's; the teacher's in the "
               "teacher map), the first three components as red, green and blue. Locations of one colour (an "
               "island) are locations whose features agree.")


def default_steps(steps: int) -> list[int]:
    """The untrained student, two intermediate counts and the end."""
    return sorted({0, max(1, steps // 10), max(1, steps // 3), steps})


DENSE_WEIGHT = 1.0  # the dense term islands train with where the teacher has a feature map
TEACHER_PANEL = "teacher map"


def feature_grids(teacher: Teacher, image: Tensor, given: dict[str, Any], at: Sequence[int], seed: int
                  ) -> dict[int, Tensor]:
    """Train on `image` ((1, 3, H, W) in [0, 1] at the teacher's size) with APM options `given` up to max(at) steps;
    return the (g, g, D) feature grid after each count in `at`.

    Where the teacher has a feature map before pooling (a DINO patch grid, a convolutional network's last map) the
    student also fits it (dense_weight 1 unless given): the global feature alone carries no layout, so a student
    trained on it shows only the positional gradient of its queries, not the object's regions."""
    if "dense_weight" not in given and _has_dense(teacher, image):
        given = {**given, "dense_weight": DENSE_WEIGHT}
    options = APM.parse_options({**given, "steps": max(at)})
    cfg = student_config(options, teacher.feature_dim)
    student = APMStudent(cfg, seed).to(image.device)
    x = student_input(image, cfg)
    targets = teacher_targets(teacher, image, cfg, options)
    grids: dict[int | str, Tensor] = {}
    for k, _, _ in fit(student, list(student.parameters()), x, targets, options):
        if k in at:
            with torch.no_grad():
                grids[k] = student.feature_grid(x, options.chunk_size or None)[0].float().view(cfg.grid, cfg.grid, -1)
    if targets.dense is not None:  # what the student was fitting, beside it
        grids[TEACHER_PANEL] = targets.dense[0].float().view(cfg.grid, cfg.grid, -1)
    return grids


@torch.no_grad()
def _has_dense(teacher: Teacher, image: Tensor) -> bool:
    grid = teacher.encode_dense(image)
    return grid is not None and grid.shape[1] == teacher.feature_dim


def pca_colours(grid: Tensor) -> np.ndarray:
    """(g, g, D) features -> (g, g, 3) uint8: the first three principal components, each scaled to [0, 255].

    Component signs are fixed (largest loading positive) so that colours are comparable between panels."""
    g = grid.shape[0]
    f = grid.reshape(g * g, -1).double()
    f = f - f.mean(0)
    _, _, vh = torch.linalg.svd(f, full_matrices=False)
    components = vh[:3]
    components = components * components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
    proj = f @ components.T
    proj = torch.cat([proj, proj.new_zeros(len(proj), 3 - proj.shape[1])], 1)  # fewer than 3 components: black
    lo, hi = proj.min(0).values, proj.max(0).values
    rgb = (proj - lo) / (hi - lo).clamp_min(1e-12)
    return (rgb.view(g, g, 3).numpy() * 255).round().astype(np.uint8)


def _font(panel: int, scale: float = 1.0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(12, round(panel / 14 * scale)))


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` to lines no wider than `width` pixels (a single long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width - 2 * PAD:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _line_height(font) -> int:
    return int(font.size * 1.3)


def layout(panel: int, panels: int, title: str, captions: Sequence[str]) -> tuple[int, int]:
    """(top of the panel row, height of the figure) for `panels` panels of `panel` pixels: the title above, the
    panels' captions below them, then the note on what the colours mean."""
    width = panel * panels
    title_font, font = _font(panel, 1.3), _font(panel)
    top = PAD + len(_wrap(title, title_font, width)) * _line_height(title_font) + PAD
    caption_lines = max(len(_wrap(caption, font, panel)) for caption in captions)
    note_lines = len(_wrap(COLOUR_NOTE, font, width))
    return top, top + panel + PAD + (caption_lines + note_lines) * _line_height(font) + 2 * PAD


def render(image: Tensor, grids: dict[int | str, Tensor], panel: int, title: str = "Islands of agreement"
           ) -> Image.Image:
    """One row: the input, one PCA panel per step count, and the teacher's map where the student fitted one; each
    `panel` pixels square, captioned below; the title above and a line on what the colours mean at the bottom.
    Each panel is coloured by its own PCA."""
    tiles = [("input", Image.fromarray((image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)))]
    steps = sorted(k for k in grids if isinstance(k, int))
    tiles += [(f"step {k}", Image.fromarray(pca_colours(grids[k].cpu()))) for k in steps]
    if TEACHER_PANEL in grids:
        tiles.append((TEACHER_PANEL, Image.fromarray(pca_colours(grids[TEACHER_PANEL].cpu()))))
    width = panel * len(tiles)
    top, height = layout(panel, len(tiles), title, [caption for caption, _ in tiles])
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    title_font, font = _font(panel, 1.3), _font(panel)
    y = PAD
    for line in _wrap(title, title_font, width):
        draw.text((width / 2, y), line, fill=INK, font=title_font, anchor="ma")
        y += _line_height(title_font)
    below = top + panel + PAD
    for i, (caption, tile) in enumerate(tiles):
        resample = Image.BICUBIC if i == 0 else Image.NEAREST  # grid cells stay visible as cells
        canvas.paste(tile.resize((panel, panel), resample), (i * panel, top))
        for k, line in enumerate(_wrap(caption, font, panel)):
            draw.text((i * panel + panel / 2, below + k * _line_height(font)), line, fill=INK, font=font, anchor="ma")
    y = below + max(len(_wrap(c, font, panel)) for c, _ in tiles) * _line_height(font) + PAD
    for line in _wrap(COLOUR_NOTE, font, width):
        draw.text((PAD, y), line, fill=(60, 60, 60), font=font)
        y += _line_height(font)
    return canvas


def read_image(path: str) -> Image.Image:
    """The ``--image`` file decoded as a run decodes its images, or one line saying what the path is instead."""
    file = Path(path)
    if not file.exists():
        raise UserError(f"--image {path}: no such file")
    if file.is_dir():
        raise UserError(f"--image {path} is a folder; give one image file")
    if file.stat().st_size == 0:
        raise UserError(f"--image {path} is empty (0 bytes)")
    return open_rgb(file)  # a file PIL cannot decode: one line naming it


def islands_command(image: Image.Image, name: str, teacher: Teacher, given: dict[str, Any], at: Sequence[int] | None,
                    seed: int, device: torch.device, out: str, panel: int) -> Path:
    """Preprocess the image (``read_image``; ``name``: its file name, for the title) as the teacher would, train, and
    write the PNG; returns its path."""
    image = teacher.transform(image)[None].to(device)
    steps = APM.parse_options(given).steps
    at = sorted(set(at)) if at else default_steps(steps)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        grids = feature_grids(teacher, image, given, at, seed)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"Islands of agreement: an APM student trained on {name} (teacher {teacher.name})"
    render(image, grids, panel, title).save(path)
    return path
