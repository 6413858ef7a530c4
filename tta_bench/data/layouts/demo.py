"""The offline ``demo`` suite: real photographs that ship inside the scikit-image wheel, labelled with the
ImageNet-1k class each depicts (assets/demo/labels.csv), so the first command works with no dataset."""
from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..labels import LabelSpace
from .registry import LAYOUTS
from ..sources import SampleSource


class SkimageSource(SampleSource):
    def __init__(self, names: list[str], labels: list[int]) -> None:
        self.names, self.labels = names, labels
        self.ids = [f"skimage/{n}" for n in names]

    def load(self, i: int) -> Image.Image:
        import skimage.data

        return Image.fromarray(np.asarray(getattr(skimage.data, self.names[i])())).convert("RGB")

    def _content(self, positions: tuple[int, ...]) -> tuple[str, Iterable[bytes]]:
        """The photographs ship inside scikit-image: its version names them."""
        from importlib.metadata import version

        return "scikit-image version", (version("scikit-image").encode(),)


@LAYOUTS.register("demo_photos", "photographs from skimage.data (no data root needed)")
def demo_photos(root: Path | None, space: LabelSpace, split: str, **_: object) -> list[tuple[str, SampleSource]]:
    text = resources.files("tta_bench").joinpath("assets", "demo", "labels.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return [(split, SkimageSource([r["image"] for r in rows], [space.index_of(r["wnid"]) for r in rows]))]
