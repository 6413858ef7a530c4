"""Continuous-severity corruptions (CCC): level 0 is the image itself, integer levels are ImageNet-C's (checked
against `imagecorruptions`), fractional levels interpolate the constants."""
from __future__ import annotations

import random

import numpy as np
import pytest
from imagecorruptions import corrupt as reference

from tta_bench.data.corruptions import corrupt_continuous
from tta_bench.data.corruptions.continuous import CONSTANTS, constants_at
from tta_bench.vocabulary import CORRUPTIONS

from .test_corruptions import _image, _mean_abs_change

GREY = np.full((224, 224, 3), 128, dtype=np.uint8)


def test_the_fifteen_imagenet_c_corruptions_with_six_levels_each():
    assert tuple(CONSTANTS) == CORRUPTIONS
    assert all(len(levels) == 6 for levels in CONSTANTS.values())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_zero_is_the_image_and_any_other_changes_it(name):
    image = _image(224, 224)
    assert np.array_equal(corrupt_continuous(image, name, 0, seed=1), image)
    out = corrupt_continuous(image, name, 2.75, seed=1)
    assert out.shape == image.shape and out.dtype == np.uint8 and _mean_abs_change(out, image) > 0.5


@pytest.mark.parametrize("name", ("contrast", "brightness", "pixelate", "jpeg_compression"))
@pytest.mark.parametrize("severity", (1, 3, 5))
def test_integer_levels_of_deterministic_corruptions_equal_imagecorruptions(name, severity):
    image = _image(224, 224)
    ours = corrupt_continuous(image, name, severity, seed=0).astype(int)
    theirs = reference(image, corruption_name=name, severity=severity).astype(int)
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("severity", (1, 2, 3, 4, 5))
def test_gaussian_noise_has_imagenet_c_sigma_at_integer_levels(severity):
    sigma = constants_at("gaussian_noise", severity)[0]
    assert sigma == [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    ours = corrupt_continuous(GREY, "gaussian_noise", severity, seed=0).astype(float) - 128
    theirs = reference(GREY, corruption_name="gaussian_noise", severity=severity).astype(float) - 128
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)


def test_fractional_severities_interpolate_the_constants():
    assert constants_at("contrast", 0.5)[0] == pytest.approx(0.7)
    assert constants_at("gaussian_noise", 2.5)[0] == pytest.approx(0.15)
    assert constants_at("shot_noise", 4.5)[0] == pytest.approx((1 / 5 + 1 / 3) / 2)  # 1/c, as the reference
    noisy = corrupt_continuous(GREY, "gaussian_noise", 2.5, seed=0).astype(float) - 128
    assert noisy.std() == pytest.approx(0.15 * 255, rel=0.05)


@pytest.mark.parametrize("name", ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "contrast",
                                  "pixelate", "fog", "snow"))
def test_change_grows_with_severity(name):
    image = _image(224, 224)
    changes = [_mean_abs_change(corrupt_continuous(image, name, s, seed=3), image) for s in (0.5, 2.0, 5.0)]
    assert changes[0] < changes[1] < changes[2]


@pytest.mark.parametrize("name", ("gaussian_noise", "glass_blur", "fog", "frost", "elastic_transform"))
def test_seeded_and_leaves_the_global_random_states_alone(name):
    image = _image(224, 224)
    np.random.seed(5)
    random.seed(5)
    states = np.random.get_state()[1].copy(), random.getstate()
    a, b = (corrupt_continuous(image, name, 3.3, seed=9) for _ in range(2))
    assert np.array_equal(a, b) and not np.array_equal(a, corrupt_continuous(image, name, 3.3, seed=10))
    assert np.array_equal(np.random.get_state()[1], states[0]) and random.getstate() == states[1]


@pytest.mark.parametrize("severity", (-0.1, 5.01, True))
def test_severities_outside_zero_to_five_are_refused(severity):
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        corrupt_continuous(GREY, "fog", severity, seed=0)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_continuous(GREY, "rain", 1.0, seed=0)
