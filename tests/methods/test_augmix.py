"""augmix: each operation's magnitude is drawn from the reference's level range and moves the image by that much; the
mixture visibly changes real photographs; views are crops of the full image and reproducible from their seed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.methods.conftest import photographs
from tta_bench.errors import UserError
from tta_bench.methods import augmix
from tta_bench.methods.common import seeded

OPS = {op.name: op for op in augmix.OPS}
DRAWS = 3000


def draws(name: str, severity: float, size: int = 224) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([OPS[name].draw(rng, severity, size) for _ in range(DRAWS)])


def photo(size: int = 224) -> Image.Image:
    return augmix.to_pil(photographs(1, size)[0])


def test_the_operation_list_is_the_references_without_the_imagenet_c_overlaps():
    assert list(OPS) == ["autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y",
                         "translate_x", "translate_y"]  # no colour, contrast, brightness, sharpness


@pytest.mark.parametrize("severity", [1, 3])
def test_magnitudes_span_the_references_level_range(severity):
    """level ~ U(0.1, severity), scaled by level / 10 of each operation's maximum (MEMO third_party.py, TPT
    augmix_ops.py); at severity 1 torchvision's AugMix would draw 0 for all of these."""
    rotate = draws("rotate", severity)  # int(level x 30 / 10) degrees, random sign
    assert set(np.abs(rotate)) == set(range(int(3 * severity - 1e-9) + 1)) and (rotate < 0).any() and (rotate > 0).any()
    solarize = draws("solarize", severity)  # threshold 256 - int(level x 256 / 10)
    assert solarize.min() == 256 - int(25.6 * severity - 1e-9) and solarize.max() == 256 - 2
    for name in ("shear_x", "shear_y"):  # level x 0.3 / 10, random sign
        shear = np.abs(draws(name, severity))
        assert shear.min() >= 0.003 and shear.max() <= 0.03 * severity and shear.max() > 0.029 * severity
    for name in ("translate_x", "translate_y"):  # int(level x (size / 3) / 10) pixels, random sign
        shift = draws(name, severity)
        assert set(np.abs(shift)) == set(range(int(224 / 30 * severity) + 1)) and (shift < 0).any()
    posterize = draws("posterize", severity)  # 4 - int(level x 4 / 10) bits
    assert set(posterize) == ({4} if severity == 1 else {3, 4})
    assert set(draws("autocontrast", severity)) == set(draws("equalize", severity)) == {0}


def test_translate_shifts_by_its_magnitude_and_fills_as_memo_does():
    image = photo()
    pixels = np.asarray(image)
    for t in (7, -5):
        out = np.asarray(OPS["translate_x"].apply(image, t, augmix.MEMO_FILL))
        if t > 0:
            assert np.array_equal(out[:, :-t], pixels[:, t:])
            assert (out[:, -t:] == (128, 0, 0)).all()  # PIL reads MEMO's fillcolor=128 as (128, 0, 0)
        else:
            assert np.array_equal(out[:, -t:], pixels[:, :t])
            assert (out[:, :-t] == (128, 0, 0)).all()
    out = np.asarray(OPS["translate_y"].apply(image, 6, None))
    assert np.array_equal(out[:-6], pixels[6:]) and (out[-6:] == 0).all()  # TPT: no fill colour, black


def _centroid(image: Image.Image) -> tuple[float, float]:
    a = np.asarray(image, dtype=float)[..., 0]
    ys, xs = np.indices(a.shape)
    return float((xs * a).sum() / a.sum()), float((ys * a).sum() / a.sum())


@pytest.mark.parametrize("degrees", [2, -2, 8])
def test_rotate_turns_the_image_by_its_magnitude(degrees):
    image = Image.new("RGB", (224, 224))
    image.paste((255, 255, 255), (180, 108, 188, 116))  # a square 72 px right of the centre
    x, y = _centroid(OPS["rotate"].apply(image, degrees, None))
    angle = math.degrees(math.atan2(-(y - 111.5), x - 111.5))  # PIL turns counter-clockwise
    assert angle == pytest.approx(degrees, abs=0.3)


@pytest.mark.parametrize("name,axis", [("shear_x", 1), ("shear_y", 0)])
def test_shear_slants_the_image_by_its_magnitude(name, axis):
    image = Image.new("RGB", (224, 224))
    image.paste((255, 255, 255), (100, 0, 104, 224) if axis == 1 else (0, 100, 224, 104))  # a line across
    out = np.asarray(OPS[name].apply(image, 0.03, None), dtype=float)[..., 0]
    lines = out if axis == 1 else out.T  # each row across the line
    centre = [(np.arange(224) * row).sum() / row.sum() for row in lines[20:200]]
    slope = np.polyfit(np.arange(20, 200), centre, 1)[0]
    assert slope == pytest.approx(-0.03, abs=0.002)  # output (x, y) samples the input at (x + 0.03 y, y)


def test_solarize_and_posterize_act_exactly_at_their_magnitude():
    image = photo()
    pixels = np.asarray(image).astype(int)
    out = np.asarray(OPS["solarize"].apply(image, 180, None)).astype(int)  # 180: the lowest at severity 3
    assert np.array_equal(out, np.where(pixels >= 180, 255 - pixels, pixels)) and (pixels >= 180).any()
    out = np.asarray(OPS["posterize"].apply(image, 4, None)).astype(int)
    assert np.array_equal(out, pixels & 0xF0) and not np.array_equal(out, pixels)


def test_autocontrast_and_equalize_stretch_a_dull_photograph():
    dull = Image.fromarray((np.asarray(photo()) * 0.4 + 60).astype(np.uint8))
    stretched = np.asarray(OPS["autocontrast"].apply(dull, 0, None))
    assert stretched.min() == 0 and stretched.max() == 255
    equalized = np.asarray(OPS["equalize"].apply(dull, 0, None))
    assert np.ptp(equalized) > 2 * np.ptp(np.asarray(dull))


def test_the_mixture_visibly_changes_real_photographs():
    """Same crops with and without the mixture (the crop draws come first, from torch): per view, the mean absolute
    pixel change. torchvision's AugMix(severity=1), used before, gives a median of 0.006 on these photographs."""
    changes = []
    for k, image in enumerate(photographs(4, 224)):
        with seeded(k):
            mixed = augmix.views(image, 16, 224)
        with seeded(k):
            plain = augmix.views(image, 16, 224, mix=False)
        changes.append((mixed - plain).abs().mean(dim=(1, 2, 3)))
    changes = torch.cat(changes)
    assert changes.median() > 0.015 and (changes > 1e-3).float().mean() > 0.9


def test_mixture_weights_blend_the_crop_and_its_chains():
    """m x crop + (1 - m) x sum_i w_i chain_i with w ~ Dirichlet(1, 1, 1): a convex blend, so pixel values stay in
    [0, 255], and a photograph's mean brightness moves by less than its chains move it."""
    image = photo()
    rng = np.random.default_rng(3)
    out = [augmix.augmix(image, rng, 1, None) for _ in range(20)]
    assert all(o.shape == (224, 224, 3) and o.dtype == np.float32 and 0 <= o.min() and o.max() <= 255 for o in out)
    assert len({float(o.mean()) for o in out}) == 20


def test_views_are_reproducible_from_their_seed_and_leave_the_global_generator_alone():
    image = photographs(1, 96)[0]
    state = torch.random.get_rng_state()
    with seeded(7):
        a = augmix.views(image, 4, 64)
    with seeded(7):
        b = augmix.views(image, 4, 64)
    with seeded(8):
        c = augmix.views(image, 4, 64)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (4, 3, 64, 64) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1


def test_views_are_crops_of_the_full_picture_not_of_its_centre():
    """A wide picture whose centre square (what a teacher's centre crop keeps) is grey and whose sides are red:
    RandomResizedCrop of the full picture, as MEMO's and TPT's code crop, shows the red sides in most views."""
    wide = torch.full((3, 64, 192), 128, dtype=torch.uint8)
    wide[:, :, :64] = wide[:, :, 128:] = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]
    with seeded(0):
        views = augmix.views(wide, 32, 64, mix=False)
    red = ((views[:, 0] > 0.9) & (views[:, 1] < 0.1)).flatten(1).any(1)
    assert red.float().mean() > 0.5


def test_pad_crop_is_memos_cifar_preaugmentation():
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    with seeded(0):
        views = augmix.views(image, 64, 32, crop="pad", mix=False)
    black = views.sum(1) == 0  # the 4 px of zero padding shift into all but 1 in 81 crops, never more than 4 px
    assert views.shape == (64, 3, 32, 32) and black.flatten(1).any(1).float().mean() > 0.8
    assert black.all(1).sum(1).max() <= 4 and black.all(2).sum(1).max() <= 4
    with pytest.raises(UserError, match="crop"):
        augmix.views(image, 1, 32, crop="centre")
