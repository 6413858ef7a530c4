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
from PIL import Image, ImageDraw
from torch import Tensor

from .data.images import open_rgb
from .errors import UserError
from .methods.apm import APM, fit, student_config, student_input, teacher_targets
from .models.apm_student import APMStudent
from .teachers.base import Teacher

CAPTION_HEIGHT = 18
BACKGROUND = (255, 255, 255)


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


def render(image: Tensor, grids: dict[int | str, Tensor], panel: int) -> Image.Image:
    """One row: the input, one PCA panel per step count, and the teacher's map where the student fitted one; each
    `panel` pixels square with a caption below. Each panel is coloured by its own PCA."""
    tiles = [("input", Image.fromarray((image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)))]
    steps = sorted(k for k in grids if isinstance(k, int))
    tiles += [(f"step {k}", Image.fromarray(pca_colours(grids[k].cpu()))) for k in steps]
    if TEACHER_PANEL in grids:
        tiles.append((TEACHER_PANEL, Image.fromarray(pca_colours(grids[TEACHER_PANEL].cpu()))))
    canvas = Image.new("RGB", (panel * len(tiles), panel + CAPTION_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, (caption, tile) in enumerate(tiles):
        resample = Image.BICUBIC if i == 0 else Image.NEAREST  # grid cells stay visible as cells
        canvas.paste(tile.resize((panel, panel), resample), (i * panel, 0))
        draw.text((i * panel + 4, panel + 3), caption, fill=(0, 0, 0))
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


def islands_command(image: Image.Image, teacher: Teacher, given: dict[str, Any], at: Sequence[int] | None, seed: int,
                    device: torch.device, out: str, panel: int) -> Path:
    """Preprocess the image (``read_image``) as the teacher would, train, and write the PNG; returns its path."""
    image = teacher.transform(image)[None].to(device)
    steps = APM.parse_options(given).steps
    at = sorted(set(at)) if at else default_steps(steps)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        grids = feature_grids(teacher, image, given, at, seed)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    render(image, grids, panel).save(path)
    return path
