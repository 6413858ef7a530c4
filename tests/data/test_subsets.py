"""--subset 5k selects exactly the RobustBench list's images, the same ones in every domain; tables mark it."""
from __future__ import annotations

from importlib import resources

import pytest

from tta_bench.config import RunConfig
from tta_bench.data.build import load_suite
from tta_bench.errors import DataError

from conftest import image_array

from PIL import Image

LISTED = resources.files("tta_bench").joinpath("assets", "imagenet_5000_val_ids.txt").read_text().split()[:6]


def _write(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_array(len(name), 16)).save(root / name)


def test_the_list_ships_with_5000_ids_in_997_classes():
    ids = resources.files("tta_bench").joinpath("assets", "imagenet_5000_val_ids.txt").read_text().split()
    assert len(ids) == len(set(ids)) == 5000
    assert len({i.split("/")[0] for i in ids}) == 997


def test_5k_keeps_the_listed_images_only(tmp_path):
    others = [f"{LISTED[0].split('/')[0]}/ILSVRC2012_val_9999999{i}.JPEG" for i in range(3)]
    _write(tmp_path, LISTED + others)
    suite = load_suite(RunConfig(suite="imagenet", data_root=str(tmp_path), subset="5k"))
    assert sorted(suite.splits[0].source.ids) == sorted(LISTED)
    assert suite.subset == "5k"


def test_5k_is_the_same_images_in_every_generated_domain(tmp_path):
    _write(tmp_path, LISTED + [f"{LISTED[1].split('/')[0]}/not_listed.JPEG"])
    suite = load_suite(RunConfig(suite="imagenet-c", source="generated", data_root=str(tmp_path), subset="5k",
                                 corruptions=["fog", "contrast"]))
    assert [sorted(s.source.ids) for s in suite.splits] == [sorted(LISTED)] * 2


def test_5k_on_data_without_listed_images_says_so(tmp_path):
    _write(tmp_path, ["n01440764/not_listed.JPEG"])
    with pytest.raises(DataError, match="5k subset"):
        load_suite(RunConfig(suite="imagenet", data_root=str(tmp_path), subset="5k"))
