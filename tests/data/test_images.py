"""Decoding images: 16-bit greyscale keeps its tones instead of clipping to white."""
from __future__ import annotations

import numpy as np
from PIL import Image

from tta_bench.data.images import open_rgb


def test_a_16_bit_greyscale_png_decodes_to_the_right_image(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(open_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[..., 0], ramp / 257, atol=1)  # PIL's own convert() gives 255 almost everywhere
    assert (rgb[..., 0] == rgb[..., 1]).all()
