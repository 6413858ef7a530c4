import random

import numpy as np
import pytest
from imagecorruptions import get_corruption_names
from PIL import Image

from tta_bench.data.corruptions import FAMILIES, corrupt
from tta_bench.vocabulary import CORRUPTIONS
from tta_bench.data.corruptions.cifar import CIFAR_C_CONSTANTS

SIZE = {"imagenet-c": 224, "cifar-c": 32}  # the size each family is made for
NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")


def _image(height: int, width: int) -> np.ndarray:
    """A photo-like test image: smooth blobs plus fine texture, values kept away from 0 and 255 so that
    brightening, darkening and noise all show."""
    rng = np.random.default_rng(0)
    blobs = Image.fromarray(rng.integers(40, 216, (4, 4, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    texture = rng.integers(-20, 21, (height, width, 3))
    return np.clip(np.asarray(blobs, dtype=int) + texture, 40, 215).astype(np.uint8)


def _mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b).mean())


def test_corruption_names_match_imagecorruptions_and_table():
    assert CORRUPTIONS == tuple(get_corruption_names("common"))
    assert tuple(CIFAR_C_CONSTANTS) == CORRUPTIONS
    assert all(len(row) == 5 for row in CIFAR_C_CONSTANTS.values())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("severity", (1, 5))
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_returns_a_changed_uint8_image_of_the_same_shape(family, severity, name):
    image = _image(SIZE[family], SIZE[family])
    out = corrupt(image, name, severity, family, seed=0)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert _mean_abs_change(out, image) > 0.5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_non_square_images_keep_their_shape(family, name):
    image = _image(48, 80)
    out = corrupt(image, name, 5, family, seed=0)
    assert out.dtype == np.uint8 and out.shape == image.shape


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("severity", (1, 5))
def test_brightness_raises_the_mean_and_contrast_narrows_the_spread(family, severity):
    image = _image(SIZE[family], SIZE[family])
    brighter = corrupt(image, "brightness", severity, family, seed=0)
    flatter = corrupt(image, "contrast", severity, family, seed=0)
    assert brighter.mean() > image.mean() + 5
    # contrast scales the distance to each channel's mean, so the mean stays and the spread shrinks
    assert (flatter.std(axis=(0, 1)) < 0.9 * image.std(axis=(0, 1))).all()
    assert abs(flatter.mean() - image.mean()) < 2


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_the_same_image(family):
    image = _image(SIZE[family], SIZE[family])
    for name in CORRUPTIONS:
        first = corrupt(image, name, 3, family, seed=7)
        np.testing.assert_array_equal(first, corrupt(image, name, 3, family, seed=7), err_msg=name)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", NOISES + ("glass_blur", "snow", "fog", "frost"))
def test_different_seeds_give_different_images(family, name):
    image = _image(SIZE[family], SIZE[family])
    assert not np.array_equal(corrupt(image, name, 5, family, seed=1), corrupt(image, name, 5, family, seed=2))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ("gaussian_noise", "impulse_noise", "glass_blur", "fog"))
def test_global_random_states_are_restored(family, name):
    np.random.seed(123)
    random.seed(123)
    np.random.random()  # move off the freshly seeded state
    numpy_before, python_before = np.random.get_state(), random.getstate()
    corrupt(_image(SIZE[family], SIZE[family]), name, 5, family, seed=0)
    numpy_after = np.random.get_state()
    assert numpy_after[0] == numpy_before[0] and numpy_after[2:] == numpy_before[2:]
    np.testing.assert_array_equal(numpy_after[1], numpy_before[1])
    assert random.getstate() == python_before


def test_cifar_gaussian_noise_grows_with_severity():
    image = np.full((32, 32, 3), 128, np.uint8)  # mid grey: no clipping to hide the noise
    changes = [_mean_abs_change(corrupt(image, "gaussian_noise", s, "cifar-c", seed=0), image) for s in range(1, 6)]
    assert changes == sorted(changes) and len(set(changes)) == 5


def test_cifar_gaussian_noise_is_weaker_than_imagenet_at_32_pixels():
    """The reason for separate constants: sigma 0.10 (CIFAR-C) against 0.38 (ImageNet-C) at severity 5."""
    image = np.full((32, 32, 3), 128, np.uint8)
    cifar = _mean_abs_change(corrupt(image, "gaussian_noise", 5, "cifar-c", seed=0), image)
    imagenet = _mean_abs_change(corrupt(image, "gaussian_noise", 5, "imagenet-c", seed=0), image)
    expected_cifar = 0.10 * 255 * np.sqrt(2 / np.pi)  # mean |N(0, sigma)| in 0..255 units
    assert cifar == pytest.approx(expected_cifar, rel=0.1)
    assert imagenet > 3 * cifar


@pytest.mark.parametrize(
    ("arguments", "named_choices"),
    [
        ({"name": "gaussian"}, ("gaussian_noise", "jpeg_compression")),
        ({"severity": 0}, ("1, 2, 3, 4, 5",)),
        ({"severity": 6}, ("1, 2, 3, 4, 5",)),
        ({"family": "imagenet"}, ("imagenet-c", "cifar-c")),
    ],
)
def test_unknown_choices_raise_value_error_naming_the_valid_ones(arguments, named_choices):
    call = {"image": _image(32, 32), "name": "fog", "severity": 3, "family": "cifar-c", "seed": 0} | arguments
    with pytest.raises(ValueError) as caught:
        corrupt(**call)
    assert all(choice in str(caught.value) for choice in named_choices)


@pytest.mark.parametrize(
    ("image", "family"),
    [
        (np.zeros((32, 32, 3), np.float32), "cifar-c"),
        (np.zeros((32, 32), np.uint8), "cifar-c"),
        (np.zeros((16, 16, 3), np.uint8), "imagenet-c"),
    ],
)
def test_unsuitable_images_raise_value_error(image, family):
    with pytest.raises(ValueError):
        corrupt(image, "fog", 3, family, seed=0)
